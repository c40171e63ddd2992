"""Mini-batch planning, the error budget and the job counts: pure logic, no Prefect."""

import pytest

from blocks.errors import ErrorCategory, ErrorThresholdExceeded
from flows.finish import timed_out_every_attempt
from flows.planning import plan_mini_batches
from flows.results import AttemptRecord, JobCounts, MiniBatchResult
from flows.threshold import ErrorBudget


def test_split_by_file_count_keeps_order_and_every_file():
    files = [f"{i:03d}.png" for i in range(100)]
    plan = plan_mini_batches(files, 10)
    assert len(plan) == 10
    assert [mb.index for mb in plan] == list(range(10))
    assert [f for mb in plan for f in mb.files] == files


def test_last_mini_batch_is_short():
    plan = plan_mini_batches([str(i) for i in range(25)], 10)
    assert [len(mb) for mb in plan] == [10, 10, 5]
    assert plan[2].id == "2"


def test_one_file_is_one_mini_batch():
    assert [mb.files for mb in plan_mini_batches(["a.png"], 10)] == [("a.png",)]


def test_mini_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="mini_batch_size"):
        plan_mini_batches(["a"], 0)


@pytest.mark.parametrize(
    ("threshold", "failed", "exceeded"),
    [(-1, 10_000, False), (0, 0, False), (0, 1, True), (5, 5, False), (5, 6, True)],
)
def test_error_budget(threshold, failed, exceeded):
    budget = ErrorBudget(threshold)
    budget.record(failed)
    assert budget.exceeded is exceeded


def test_error_budget_message_is_the_platforms():
    budget = ErrorBudget(3, failed_items=4)
    with pytest.raises(ErrorThresholdExceeded) as info:
        budget.check()
    assert info.value.message == "The number of failed items is 4, which exceeds error threshold 3."


def test_job_counts_and_summary():
    counts = JobCounts.of(
        [
            MiniBatchResult(0, 10, 10, 0, 1, "succeeded"),
            MiniBatchResult(1, 10, 7, 3, 2, "succeeded"),
            MiniBatchResult(2, 5, 0, 5, 3, "failed"),
            MiniBatchResult.canceled(3, 10),
        ]
    )
    assert (counts.items, counts.items_succeeded, counts.items_failed) == (35, 17, 8)
    assert counts.summary() == (
        "4 mini-batches: 2 succeeded, 1 failed, 1 canceled; 35 items: 17 succeeded, 8 failed"
    )


def test_timed_out_every_attempt_needs_all_attempts_to_time_out():
    failed = MiniBatchResult(4, 2, 0, 2, 2, "failed")

    def attempt(number: int, category: ErrorCategory) -> AttemptRecord:
        return AttemptRecord(4, number, category, "detail", ("a.png", "b.png"))

    both = [attempt(1, ErrorCategory.TIMEOUT), attempt(2, ErrorCategory.TIMEOUT)]
    mixed = [attempt(1, ErrorCategory.TIMEOUT), attempt(2, ErrorCategory.USER_ERROR)]
    assert timed_out_every_attempt(both, failed)
    assert not timed_out_every_attempt(mixed, failed)
    assert not timed_out_every_attempt(both, MiniBatchResult(4, 2, 2, 0, 3, "succeeded"))


def test_a_local_write_is_atomic_and_gets_a_new_files_mode(tmp_path):
    import os
    import stat

    from flows.storage import Location

    target = Location(str(tmp_path / "out" / "predictions.csv"))

    def chunks():
        yield b"a 1\n"
        assert os.listdir(tmp_path / "out") != ["predictions.csv"]  # not visible while written
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        target.write_atomic(chunks())
    assert os.listdir(tmp_path / "out") == []  # nothing half-written left behind
    previous = os.umask(0o027)
    try:
        assert target.write_atomic([b"a 1\n", b"b 2\n"]) == 8
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(target.uri).st_mode) == 0o640
    assert Location(str(tmp_path / "out")).list_names() == ["predictions.csv"]


def test_a_local_folders_names_are_its_files_only(tmp_path):
    from flows.staging import JobStaging
    from flows.storage import Location

    staging = JobStaging(Location(str(tmp_path / "staging")))
    assert staging.committed() == frozenset()  # no parts/ yet
    for index in (0, 2, 10):
        staging.commit_rows(index, b"row\n")
    (tmp_path / "staging" / "parts" / "not-a-part").mkdir()
    (tmp_path / "staging" / "parts" / "notes.txt").write_text("x")
    assert staging.committed() == frozenset({0, 2, 10})
    assert sorted(Location(str(tmp_path / "staging" / "parts")).list_names()) == [
        "000000000.rows",
        "000000002.rows",
        "000000010.rows",
        "notes.txt",
    ]
