"""The README's two set-up commands exist, and CI runs exactly the test one."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```", 1)[0].strip() for b in blocks]


def test_two_setup_commands_first():
    run_cmd, test_cmd = setup_commands()
    assert run_cmd.endswith("trainperf run")
    assert "torch==2.13.0" in run_cmd and "torch==2.13.0" in test_cmd
    assert test_cmd.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    _, test_cmd = setup_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"{test_cmd} || exit 1" in ci_lines
