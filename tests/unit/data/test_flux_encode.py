"""prepare flux1 --raw: raw image + caption pairs -> the MLPerf preprocessed layout, through the
diffusers/transformers encoders of a FLUX.1 pipeline folder (tiny random ones here, written in
the same layout as black-forest-labs/FLUX.1-schnell)."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("PIL")

from trainperf.data import flux_encode as E  # noqa: E402
from trainperf.data.flux_format import (  # noqa: E402
    CLIP,
    CLIP_EMPTY,
    EMPTY_DIR,
    EVAL_DIR,
    LOGVAR,
    MEAN,
    T5,
    T5_EMPTY,
    TIMESTEP,
    TRAIN_DIR,
    ArrowRows,
    npy_bf16_cells,
)

WORDS = ["[PAD]", "[UNK]", "</s>", "a", "red", "cat", "dog", "on", "the", "grass", "blue", "sky"]


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>"
    )
    fast.save_pretrained(folder)


@pytest.fixture(scope="module")
def encoders_dir(tmp_path_factory) -> Path:
    """A FLUX.1 pipeline folder of tiny random encoders: VAE with 16 latent channels and a
    downsampling factor of 8, CLIP (pooled width 24), T5 (width 20)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("flux-encoders")
    torch.manual_seed(0)
    AutoencoderKL(
        latent_channels=16,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
    ).save_pretrained(root / "vae")
    clip = CLIPTextConfig(vocab_size=len(WORDS), hidden_size=24, intermediate_size=32,
                          num_hidden_layers=1, num_attention_heads=2, eos_token_id=2)  # fmt: skip
    CLIPTextModel(clip).save_pretrained(root / "text_encoder")
    t5 = T5Config(vocab_size=len(WORDS), d_model=20, d_kv=10, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(t5).save_pretrained(root / "text_encoder_2")
    _tokenizer(root / "tokenizer")
    _tokenizer(root / "tokenizer_2")
    return root


def _raw(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = {"cc12m": [(300, 256), (256, 400), (512, 512)], "coco": [(256, 256), (320, 240)]}
    for split, shapes in sizes.items():
        (tmp_path / "raw" / split).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "raw" / split / f"{i:04d}.png")
            (tmp_path / "raw" / split / f"{i:04d}.txt").write_text(f"a red cat on the grass {i}")
    return tmp_path / "raw"


def test_encodes_raw_pairs_into_the_mlperf_layout(tmp_path, encoders_dir) -> None:
    raw = _raw(tmp_path)
    enc = E.load_encoders(str(encoders_dir), device=torch.device("cpu"))
    out = tmp_path / "data"
    E.encode_raw_flux(raw, out, enc, batch_size=2, log=lambda line: None)
    train = ArrowRows(out / TRAIN_DIR, columns=[T5, CLIP, MEAN, LOGVAR])
    evals = ArrowRows(out / EVAL_DIR, columns=[T5, CLIP, MEAN, LOGVAR, TIMESTEP])
    assert (len(train), len(evals)) == (3, 2)
    assert list(evals.int_column(TIMESTEP)) == [0, 1]
    # each cell is the encoders' output for that pair, rounded to bf16 (relative 2^-8), computed
    # here alone instead of in a batch of 2 (float32 sums in another order: ~1e-6 of the scale)
    t5, clip = enc.text(["a red cat on the grass 1"])
    mean, logvar = enc.images(E.load_image(raw / "cc12m" / "0001.png")[None])
    for column, want in ((T5, t5), (CLIP, clip), (MEAN, mean), (LOGVAR, logvar)):
        got = npy_bf16_cells(train, column, [1])
        assert got.shape == want.shape
        atol = 1e-5 * float(np.abs(want).max())
        assert np.allclose(got, want, rtol=2**-8, atol=atol), column
    assert mean.shape == (1, 16, 32, 32) and t5.shape == (1, E.T5_TOKENS, 20)
    assert clip.shape == (1, 24)
    empty_t5, empty_clip = (
        np.load(out / EMPTY_DIR / T5_EMPTY),
        np.load(out / EMPTY_DIR / CLIP_EMPTY),
    )
    assert (empty_t5.shape, empty_clip.shape) == ((1, E.T5_TOKENS, 20), (1, 24))
    assert empty_t5.dtype == np.float16
    # a second call keeps the finished folders
    lines = []
    E.encode_raw_flux(raw, out, enc, batch_size=2, log=lines.append)
    assert sum("kept" in line for line in lines) == 2


def test_images_are_resized_and_centre_cropped(tmp_path) -> None:
    from PIL import Image

    pixels = np.zeros((256, 512, 3), np.uint8)
    pixels[:, 128:384] = 255  # the centre half is white
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = E.load_image(tmp_path / "wide.png")
    assert image.shape == (3, 256, 256)
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert float(image[:, :, 100:156].mean()) == pytest.approx(1.0)  # the crop is the centre


def test_bad_raw_input_is_one_clear_error(tmp_path, capsys) -> None:
    from trainperf.cli import main

    def said() -> str:  # the error line, unwrapped
        out = capsys.readouterr()
        return " ".join((out.out + out.err).split())

    tiny = ["prepare", "flux1", "--scale", "tiny", "--raw", str(tmp_path)]
    assert main(tiny) == 2 and "--raw is for flux1 at full scale" in said()
    full = ["prepare", "flux1", "--scale", "full", "--data-dir", str(tmp_path / "d")]
    assert main([*full, "--raw", str(tmp_path / "missing")]) == 2
    assert "needs DIR/cc12m and DIR/coco" in said()
    raw = _raw(tmp_path)
    (raw / "coco" / "0001.txt").unlink()
    assert main([*full, "--raw", str(raw)]) == 2
    assert "0001.png has no caption 0001.txt" in said()
    (raw / "coco" / "0001.png").write_bytes(b"not an image")
    (raw / "coco" / "0001.txt").write_text("a cat")
    with pytest.raises(ValueError, match="0001.png is not a readable image"):
        E.load_image(raw / "coco" / "0001.png")
    assert main([*full, "--raw", str(raw), "--encoders", str(tmp_path / "none")]) == 2
    out = said()
    assert "cannot load the FLUX.1 encoders" in out and "Traceback" not in out
