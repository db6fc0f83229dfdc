"""`resnetlab experiment ablation`: He et al. 2016's tables as one command; its words agree with its intervals."""

import csv

import pytest

from resnetlab.ablation import FAILS, TABLES, Outcome, Table, Variant, findings, measured_order, outcome_of, slug
from resnetlab.cli import main
from resnetlab.experiments import Member

TOY = Table(
    "Toy",
    "a made-up paper",
    ("Net-1",),
    (
        Variant("original", {}, (6.0,)),
        Variant("worse in the paper", {}, (8.0,)),
        Variant("better in the paper", {}, (5.0,)),
        Variant("fails in the paper", {}, (FAILS,)),
    ),
)


def verdicts(outcomes: list[Outcome]) -> list[str]:
    """The verdict each variant's sentence ends with."""
    return [line.rsplit(": ", 1)[-1].rstrip(".") for line in findings(TOY, 0, outcomes, "Net-1")[:-1]]


def test_intervals_apart_in_the_papers_direction_reproduce_it_and_against_it_contradict():
    original = Outcome([6.0, 6.1, 6.2])
    worse, better = Outcome([9.0, 9.1, 9.2]), Outcome([4.0, 4.1, 4.2])
    assert verdicts([original, worse, better, worse]) == [
        "worse, so it reproduces",
        "better, so it reproduces",
        "worse, so it reproduces",  # measurably worse than the original stands for the paper's "fails"
    ]
    assert verdicts([original, better, worse, better]) == [
        "better, so it contradicts",
        "worse, so it contradicts",
        "better, so it contradicts",
    ]


def test_overlapping_intervals_cannot_be_separated_even_when_the_means_follow_the_paper():
    original = Outcome([6.0, 7.0, 8.0])
    near = Outcome([6.5, 7.5, 8.5])  # the mean is worse, as the paper has it, but the intervals overlap
    assert verdicts([original, near, near, near]) == ["the seeds cannot separate"] * 3
    summary = findings(TOY, 0, [original, near, near, near], "Net-1")[-1]
    assert "reproduces 0, contradicts 0, and cannot separate 3 (95% intervals over seeds)" in summary


def test_a_failed_variant_is_worse_than_a_trained_original_and_two_failures_are_not_ordered():
    original = Outcome([6.0, 6.1, 6.2])
    failed = Outcome([], failed=3, why=["diverged"] * 3)
    assert measured_order(failed, original) == "worse"
    assert verdicts([original, failed, failed, failed]) == [
        "worse, so it reproduces",
        "worse, so it contradicts",
        "worse, so it reproduces",
    ]
    assert measured_order(Outcome([6.0, 6.1, 6.2]), failed) == "better"
    assert measured_order(failed, Outcome([], failed=1)) == "inseparable"
    partly = Outcome([6.0, 6.1], failed=1)  # one seed of three failed: neither a failure nor an interval
    assert partly.cell() == "fails (1 of 3 seeds)"
    assert measured_order(partly, original) == measured_order(original, partly) == "inseparable"
    assert verdicts([partly, worse_than(partly), failed, original]) == ["the seeds cannot separate"] * 3


def worse_than(outcome: Outcome) -> Outcome:
    return Outcome([e + 10 for e in outcome.errors])


def test_one_seed_orders_only_failures_and_says_so():
    one_failed = Outcome([], failed=1, why=["diverged"])
    lines = findings(TOY, 0, [Outcome([6.0]), Outcome([20.0]), Outcome([1.0]), one_failed], "Net-1")
    assert [line.rsplit(": ", 1)[-1] for line in lines[:-1]] == [
        "the seeds cannot separate.",
        "the seeds cannot separate.",
        "worse, so it reproduces.",
    ]
    assert "one seed orders only a failed arm against a trained one" in lines[-1]


def _member(name: str, test_top1: float) -> Member:
    summary = {"test_top1": test_top1, "test_per_class": {str(c): 0.0 for c in range(10)}}
    return Member(name, None, summary, [])


def test_a_member_no_better_than_a_guess_fails_and_a_diverged_one_says_why():
    outcome = outcome_of([_member("a", 0.92), _member("b", 0.11), "diverged: the loss became nan"])
    assert outcome.errors == pytest.approx([8.0]) and outcome.failed == 2
    assert "89.00% test error, a guess's" in outcome.why[0] and outcome.why[1].startswith("diverged")


def test_tables_hold_the_published_columns_and_distinct_run_names():
    shortcuts, activations = TABLES["shortcuts"], TABLES["activations"]
    assert [v.published for v in shortcuts.variants][:3] == [(6.61,), (FAILS,), (12.35,)]
    assert activations.variants[-1].published == (6.37, 5.46) and activations.variants[0].published == (6.61, 5.93)
    names = [slug(v.label) for t in TABLES.values() for v in t.variants]
    assert len(set(names)) == len(names) - 1  # "original" is in both tables, each in its own folder
    assert slug("exclusive gating, bias -6") == "exclusive-gating-bias-m6"


def test_changed_settings_get_a_folder_of_their_own():
    from resnetlab.ablation import default_name

    assert default_name("shortcuts", "quick", []) == "ablation-shortcuts-quick"
    other = default_name("shortcuts", "quick", ["epochs=10"])
    assert other.startswith("ablation-shortcuts-quick-") and other != default_name("shortcuts", "quick", ["epochs=9"])


def test_experiment_ablation_runs_a_table_and_writes_its_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    args = ["experiment", "ablation", "table=activations", "seeds=2", f"out={tmp_path}", "data=synthetic"]
    args += ["limit_train=48", "limit_val=24", "epochs=1", "batch_size=24"]
    assert main(args) == 0
    exp = next(tmp_path.glob("ablation-activations-quick-*"))  # its own folder: the recipe was changed
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [v.label for v in TABLES["activations"].variants]
    assert {r["seeds"] for r in rows} == {"2"}
    with open(exp / "members.csv") as f:
        members = list(csv.DictReader(f))
    assert len(members) == 10  # every variant's two seeds trained (none diverged), each a row
    report = (exp / "report.md").read_text()
    assert "He et al. 2016, table 2" in report and "of the paper's 4 orderings" in report
    assert (exp / "ablation-resnet20.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert main(args) == 0  # run again: every member is read back, none retrained
    again = capsys.readouterr().out
    assert "training" not in again.replace("finished before, not retrained", "") and "ReLU-only" in out


@pytest.mark.parametrize(
    "args,words",
    [
        (["experiment", "ablation"], "ablation needs table=NAME: one of shortcuts, activations"),
        (["experiment", "ablation", "table=gates"], "table='gates' is not one of shortcuts, activations"),
        (["experiment", "ablation", "table=shortcuts", "preset=full"], "preset='full' is not one of quick, paper"),
        (["experiment", "compare", "models=resnet8", "table=shortcuts"], "table=shortcuts applies to"),
    ],
)
def test_ablation_misuse_is_one_sentence_and_status_2(args, words, capsys):
    assert main(args) == 2
    assert words in capsys.readouterr().err


def test_every_preset_builds_every_variant_of_its_tables(tmp_path):
    """The paper preset is not run here: its members' settings must still resolve and their networks build."""
    from resnetlab.ablation import NETWORKS, PRESETS, variant_config
    from resnetlab.models import create_model

    for preset in PRESETS.values():
        for table in TABLES.values():
            for network, column in preset.networks_for(table):
                assert column < len(table.columns)
                for variant in table.variants:
                    cfg = variant_config(preset, [], network, variant, 0, tmp_path)
                    assert cfg.model.name == NETWORKS[network][0]
                    net = create_model(cfg.model.name, **cfg.model.args)
                    assert all(getattr(net.cfg, k) == v for k, v in variant.fields.items())
    paper = variant_config(PRESETS["paper"], [], "ResNet-164", TABLES["activations"].variants[1], 2, tmp_path)
    assert (paper.schedule.iterations, paper.data.name, paper.run.seed) == (64000, "cifar10", 2)
    assert paper.model.args == {"preact": False, "layout": "bn_after_add"}
