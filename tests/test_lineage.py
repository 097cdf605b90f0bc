"""What a model inherited (`fer_utils.lineage`): the recorded ancestors and the split checks on them."""

import pytest

from fer_utils import lineage, pretrained, runs

SPLIT = {"validation": "10% of train, stratified, seed 42", "train_size": 90, "val_size": 10,
         "train_class_counts": [13] * 6 + [12]}
OTHER_SPLIT = {**SPLIT, "validation": "20% of train, stratified, seed 42", "train_size": 80, "val_size": 20}
OTHER_DATASET = {**SPLIT, "train_size": 900, "val_size": 100}


def _run(split=SPLIT, **config):
    return runs.Run(path=None, model=None, config={"data": dict(split or {}), **config}, history=None,
                    class_names=(), val_metrics={})


def test_a_split_is_recorded_only_when_every_field_is():
    assert lineage.split_record({"data": SPLIT}) == SPLIT
    assert lineage.split_record({"data": {**SPLIT, "val_size": None}}) is None
    assert lineage.split_record({}) is None


@pytest.mark.parametrize("config, expected", [
    ({}, []),
    ({"hyperparameters": {"init_from": None}}, []),
    ({"lineage": [{"source": "a", "split": SPLIT}]}, [{"source": "a", "split": SPLIT}]),
    # Written before lineages were recorded, but started from or learnt from other models: unknown.
    ({"hyperparameters": {"init_from": "runs/a"}}, None),
    ({"hyperparameters": {"teachers": ["runs/a"]}}, None),
    ({"averaged_from": [{"run": "runs/b", "init_from": "runs/a"}]}, None),
    ({"averaged_from": [{"run": "runs/c", "averaged_from": [{"run": "runs/b", "init_from": "runs/a"}]}]}, None),
])
def test_recorded_lineage_tells_none_from_unknown(config, expected):
    assert lineage.recorded_lineage(config) == expected


def test_lineage_of_a_run_starts_with_the_run_and_marks_unrecorded_ancestors():
    run = _run(lineage=[{"source": "runs/a", "split": SPLIT}])
    assert lineage.lineage_of("runs/b", run) == [{"source": "runs/b", "split": SPLIT}, {"source": "runs/a", "split": SPLIT}]
    legacy = lineage.lineage_of("runs/b", _run(hyperparameters={"init_from": "runs/a"}))
    assert legacy[1] == {"source": "runs/b", "split": None, "unrecorded_ancestors": True}
    assert lineage.merged(legacy[:1], legacy[:1], [{"source": "runs/c", "split": None}]) == [
        {"source": "runs/b", "split": SPLIT}, {"source": "runs/c", "split": None}]
    # An entry with no split and the same source's unrecorded ancestors are two different things.
    unknown = [{"source": "runs/b", "split": None}, {"source": "runs/b", "split": None, "unrecorded_ancestors": True}]
    assert lineage.merged(unknown) == unknown


def test_a_starting_point_from_the_same_images_split_another_way_is_refused():
    with pytest.raises(ValueError, match="init_from 'runs/b' \\(through 'runs/a', which it inherits from\\) was trained "
                                         "on the same images split another way"):
        lineage.check_starting_point("runs/b", [{"source": "runs/b", "split": SPLIT},
                                                {"source": "runs/a", "split": OTHER_SPLIT}], SPLIT)
    # Validated on a folder of its own, it trained on all of this run's images, validation included.
    all_of_ours = {**SPLIT, "validation": "val/ split folder", "train_size": 100, "val_size": 30}
    with pytest.raises(ValueError, match="Stage 'runs/a' was trained on the same images"):
        lineage.check_starting_point("runs/a", [{"source": "runs/a", "split": all_of_ours}], SPLIT, role="Stage")
    # The same split, another dataset (transfer learning) and models that record no data are allowed.
    for split in (SPLIT, OTHER_DATASET, None):
        lineage.check_starting_point("runs/a", [{"source": "runs/a", "split": split}], SPLIT)


@pytest.mark.parametrize("entries, message", [
    ([{"source": "t", "split": OTHER_SPLIT}], "Teacher 't' was trained with validation"),
    ([{"source": "t", "split": SPLIT}, {"source": "runs/a", "split": OTHER_DATASET}],
     "'runs/a' \\(an ancestor of teacher 't'\\) was trained with train_size 900, this run has 90: it is not the dataset"),
    ([{"source": "t", "split": SPLIT}, {"source": "my.keras", "split": None}], "'my.keras' .* records no training split"),
    ([{"source": "t", "split": SPLIT}, {"source": "t", "split": None, "unrecorded_ancestors": True}],
     "before runs recorded what they inherit"),
])
def test_a_teacher_and_each_of_its_ancestors_must_record_the_runs_split(entries, message):
    with pytest.raises(ValueError, match=message):
        lineage.check_teacher_lineage("t", entries, SPLIT)
    lineage.check_teacher_lineage("t", entries[:1] if entries[0]["split"] == SPLIT else [], SPLIT)


def test_the_shipped_model_records_its_stages_on_its_own_split():
    info = pretrained.description()
    shipped = _run(split=None, **info)
    entries = lineage.lineage_of("builtin", shipped)
    sources = [entry["source"] for entry in entries[1:]]
    for member in info.get("members") or [info]:  # an ensemble: each member, and each stage of each member
        assert "members" not in info or member["source"] in sources
        assert all(stage["run"] in sources for stage in member.get("averaged_from") or [])
    assert all(entry["split"] == info["data"] for entry in entries)
    lineage.check_teacher_lineage("builtin", entries, info["data"])
