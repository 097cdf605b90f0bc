"""What a model inherited: the models whose weights or predictions went into it, and their data.

A run that starts from another model (`--init-from`) or learns from others (`--teachers`) carries
what they learnt, including which images they trained on. If one of them trained on this run's
validation images, the validation accuracy that picks the run's best epoch flatters it. So a run's
config.json records its `lineage`: one entry per ancestor (the models it started from or learnt
from, and theirs, all the way back), each with the split that ancestor was trained and validated
on, or `None` where the ancestor records none (a bare `.keras` file).

- A starting model (`init_from`) may come from another dataset (transfer learning) or from no
  record at all, but not from the same dataset split another way.
- A teacher, and every ancestor of it, must record exactly this run's split.
"""

from __future__ import annotations

from fer_utils import runs

# What must match between two models' data for their validation split to be the same one.
SPLIT_FIELDS = ("validation", "train_size", "val_size", "train_class_counts")


def split_record(config: dict) -> dict | None:
    """The split `config` (a run's config.json or the shipped model's model.json) trained on; None if unrecorded."""
    provenance = runs.data_provenance(config)
    if any(provenance.get(field) is None for field in SPLIT_FIELDS):
        return None
    return {field: provenance[field] for field in SPLIT_FIELDS}


def recorded_lineage(config: dict) -> list[dict] | None:
    """`config`'s ancestors as recorded; None when it has some but was written before lineages were recorded."""
    if "lineage" in config:
        return [dict(entry) for entry in config["lineage"]]
    return None if _inherits(config.get("hyperparameters", {}), config.get("averaged_from")) else []


def _inherits(hyperparameters: dict, stages) -> bool:
    """Whether a run (or an averaged run's stages, at any depth) started from or learnt from other models."""
    if hyperparameters.get("init_from") or hyperparameters.get("teachers"):
        return True
    return any(_inherits(stage, stage.get("averaged_from")) for stage in stages or [])


def lineage_of(source: str, run) -> list[dict]:
    """`run` (loaded from `source`) and its ancestors as lineage entries: `{"source", "split"}` each.

    A run that started from or learnt from models before lineages were recorded adds one entry for
    them: its own source, split None, `"unrecorded_ancestors": True`.
    """
    entries = [{"source": str(source), "split": split_record(run.config)}]
    ancestors = recorded_lineage(run.config)
    if ancestors is None:
        entries.append({"source": str(source), "split": None, "unrecorded_ancestors": True})
    else:
        entries.extend(ancestors)
    return entries


def merged(*lineages) -> list[dict]:
    """The entries of several lineages, each (source, split) once, in order."""
    seen, entries = set(), []
    for lineage in lineages:
        for entry in lineage:
            key = (entry["source"], repr(entry["split"]), bool(entry.get("unrecorded_ancestors")))
            if key not in seen:
                seen.add(key)
                entries.append(dict(entry))
    return entries


def check_starting_point(source: str, lineage: list[dict], provenance: dict, role: str = "init_from") -> None:
    """Raise ValueError when `source` or an ancestor of it trained on the run's data split another way.

    `source` is what the run's weights start from (`role` names it in the message: `init_from`, or
    a stage of an average); `provenance` is the run's data record (`TrainingData.provenance`).
    Ancestors trained on another dataset, or that record no data, are allowed: they say nothing
    about this run's split.
    """
    ours = {field: provenance.get(field) for field in SPLIT_FIELDS}
    for entry in lineage:
        theirs = entry["split"]
        if theirs is None or not _same_images(theirs, ours) or theirs == ours:
            continue
        via = "" if entry["source"] == str(source) else f" (through '{entry['source']}', which it inherits from)"
        raise ValueError(
            f"{role} '{source}'{via} was trained on the same images split another way (validation "
            f"{theirs['validation']!r}, this run {ours['validation']!r}): it has trained on some of this run's "
            "validation images, so its validation accuracy would flatter it. Start from a run validated the same way "
            "(the same val/ folder, or the same --val-fraction and --seed), or train from scratch."
        )


def check_teacher_lineage(source: str, lineage: list[dict], provenance: dict) -> None:
    """Raise ValueError unless the teacher `source` and all its ancestors record exactly the run's split."""
    ours = {field: provenance.get(field) for field in SPLIT_FIELDS}
    for entry in lineage:
        theirs = entry["split"]
        who = f"Teacher '{source}'" if entry["source"] == str(source) else f"'{entry['source']}' (an ancestor of teacher '{source}')"
        if entry.get("unrecorded_ancestors"):
            raise ValueError(
                f"{who} started from or learnt from other models before runs recorded what they inherit, so those "
                "models cannot be shown to have left this run's validation images out of their training. Teach with "
                "runs trained by this version of fer_utils, or the shipped model (builtin)."
            )
        if theirs is None:
            raise ValueError(
                f"{who} records no training split, so it cannot be shown to have left this run's validation images "
                "out of its training. Teach with runs trained by fer_utils on the same data and split (a bare .keras "
                "file records none)."
            )
        for field in SPLIT_FIELDS:
            if theirs[field] == ours[field]:
                continue
            if field == "validation":
                raise ValueError(
                    f"{who} was trained with validation {theirs[field]!r}, this run has {ours[field]!r}: it may have "
                    "trained on this run's validation images. Teach with runs validated the same way (the same val/ "
                    "folder, or the same --val-fraction and --seed)."
                )
            raise ValueError(
                f"{who} was trained with {field} {theirs[field]!r}, this run has {ours[field]!r}: it is not the "
                "dataset this run trains on. Teach with runs trained on the same --data."
            )


def _same_images(theirs: dict, ours: dict) -> bool:
    """Whether `theirs` may have trained on `ours`'s validation images: the same images split another way
    (as many in all), or all of ours as its training set (validated on a folder of its own). Compared
    by counts, not the dataset fingerprint, which changes with file dates when a dataset is copied."""
    if None in (ours["train_size"], ours["val_size"], theirs["train_size"], theirs["val_size"]):
        return False
    if len(theirs["train_class_counts"] or []) != len(ours["train_class_counts"] or []):
        return False
    ours_in_all = ours["train_size"] + ours["val_size"]
    return theirs["train_size"] + theirs["val_size"] == ours_in_all or theirs["train_size"] == ours_in_all
