import json

import pytest

from trainperf.mlperf.logger import MLPerfLogger, create_result_file, next_result_index


def records(path):
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines()]


def test_result_files_never_reused(tmp_path):
    assert next_result_index(tmp_path) == 0
    (tmp_path / "result_0.txt").write_text("earlier run\n")
    (tmp_path / "result_3.txt").write_text("earlier run\n")
    index, path = create_result_file(tmp_path)
    assert (index, path.name) == (4, "result_4.txt")
    assert (tmp_path / "result_0.txt").read_text() == "earlier run\n"
    assert create_result_file(tmp_path)[0] == 5


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create results folder"):
        create_result_file(blocker / "sub")


def test_records_are_appended_and_name_the_call_site(tmp_path):
    _, path = create_result_file(tmp_path)
    ml = MLPerfLogger(path)
    ml.start("init_start")
    ml.event("seed", 42)  # this line is the call site the seed checker reads
    assert len(records(path)) == 2  # flushed line by line, before close
    ml.end("run_stop", metadata={"status": "success", "samples_count": 16})
    ml.close()
    recs = records(path)
    assert [r["key"] for r in recs] == ["init_start", "seed", "run_stop"]
    assert [r["event_type"] for r in recs] == ["INTERVAL_START", "POINT_IN_TIME", "INTERVAL_END"]
    assert recs[1]["metadata"]["file"].endswith("test_logger.py")
    assert recs[2]["metadata"]["status"] == "success"


def test_disabled_logger_writes_nothing(tmp_path):
    path = tmp_path / "result_0.txt"
    path.write_text("")
    ml = MLPerfLogger(path, enabled=False)
    ml.event("seed", 1)
    ml.close()
    assert path.read_text() == ""
