"""Class maps for cross-dataset tests (partial domain adaptation): reading, fitting to the data,
errors that name the file and the class, the metrics on a hand-checked example, and the config
field reaching the test."""
import csv
import json

import numpy as np
import pytest
import torch
from engine_helpers import SMALL, make_synth, run_cli

from mgm.config import ConfigError, load_config
from mgm.config_checks import validate_config
from mgm.data.annotations import Annotations, Sample
from mgm.data.class_map import (BUILTIN, CLASS_SETS, ClassMapError, load_class_map, map_annotations,
                                resolve_class_map)
from mgm.engine.evaluate import merge_views
from mgm.engine.finetune import run_eval
from mgm.models import build_classifier, save_checkpoint

SOURCE = ["Archery", "Diving", "Fencing", "Punch"]          # the model's classes (4 outputs)


def target(labels, names=("dive", "fencing", "box")):
    return Annotations([Sample(f"t{i}.mp4", y) for i, y in enumerate(labels)], list(names), "list", "hmdb.txt")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_yaml_and_csv_maps_resolve_names_and_ids(tmp_path):
    y = write(tmp_path, "m.yaml", "# target -> source\ndive: Diving\nfencing: 2\n2: Punch\n")
    c = write(tmp_path, "m.csv", "target,source\ndive,Diving\n# a comment\nfencing,2\n2,Punch\n")
    t = target([0, 1, 2, 0])
    for spec in (y, c):
        m = resolve_class_map(load_class_map(spec), t, SOURCE, 4)
        assert m == {0: 1, 1: 2, 2: 3}
    mapped = map_annotations(t, {0: 1, 1: 2, 2: 3}, SOURCE, 4)
    assert [s.label for s in mapped.samples] == [1, 2, 3, 1] and mapped.classes == SOURCE
    # source classes the target lacks (Archery) are fine: predicting them is an error, not a map error
    assert 0 not in resolve_class_map(load_class_map(y), t, SOURCE, 4).values()


@pytest.mark.parametrize("text, match", [
    ("dive: Diving\nfencing: Fencing\nbox: Rowing\n", r"m\.yaml: source class 'Rowing' is not a class of the model"),
    ("dive: Diving\nkick: Punch\nbox: Punch\n", r"m\.yaml: target class 'kick' is not a class of hmdb\.txt"),
    ("dive: Diving\nfencing: Fencing\n", r"m\.yaml: target class 'box' \(id 2, 1 videos in hmdb\.txt\) has no source class"),
    ("dive: Diving\ndive: Fencing\n", r"m\.yaml: target class 'dive' is mapped twice \(line 2\)"),
    ("dive: Diving\nfencing: 7\nbox: Punch\n", r"source class 7 is not a class of the model \(4 classes"),
    ("dive:\n", r"m\.yaml: target class 'dive' has no source class"),
    ("dive: yes\n", r"m\.yaml: source class True is not a class name or id"),
    ("- dive\n", r"m\.yaml: expected a mapping"),
])
def test_map_errors_name_the_file_and_the_class(tmp_path, text, match):
    spec = write(tmp_path, "m.yaml", text)
    with pytest.raises(ClassMapError, match=match):
        resolve_class_map(load_class_map(spec), target([0, 1, 2]), SOURCE, 4)


def test_csv_errors_and_missing_names(tmp_path):
    with pytest.raises(ClassMapError, match=r"m\.csv:3: target class 'dive' is mapped twice \(first on line 2\)"):
        load_class_map(write(tmp_path, "m.csv", "target,source\ndive,Diving\ndive,Punch\n"))
    with pytest.raises(ClassMapError, match=r"m\.csv:1: expected two columns"):
        load_class_map(write(tmp_path, "m.csv", "dive,Diving,3\n"))
    with pytest.raises(ClassMapError, match=r"nope\.yaml: no such file, and not a built-in class map"):
        load_class_map(str(tmp_path / "nope.yaml"))
    # a model without recorded class names: names cannot be resolved, ids can
    spec = write(tmp_path, "n.yaml", "dive: Diving\nfencing: 2\nbox: 3\n")
    with pytest.raises(ClassMapError, match=r"source class 'Diving' is a name, but ck\.safetensors records no class names"):
        resolve_class_map(load_class_map(spec), target([0, 1, 2]), None, 4, "ck.safetensors")
    with pytest.raises(ClassMapError, match=r"hmdb\.txt: 1 videos have no label"):
        resolve_class_map(load_class_map(spec), target([0, -1]), SOURCE, 4)


def test_builtin_benchmark_maps_pair_the_shared_classes():
    assert len(CLASS_SETS["ucf14"]) == len(set(CLASS_SETS["hmdb14"])) == 14
    u2h = BUILTIN["ucf14_hmdb7"]
    assert sorted(u2h) == sorted(CLASS_SETS["hmdb7"]) and set(u2h.values()) <= set(CLASS_SETS["ucf14"])
    assert u2h["climb"] == "RockClimbingIndoor" and u2h["kick_ball"] == "SoccerPenalty"
    h2u = BUILTIN["hmdb14_ucf7"]
    assert sorted(h2u) == sorted(CLASS_SETS["ucf7"]) and h2u["Archery"] == "shoot_bow" and h2u["Biking"] == "ride_bike"
    src = list(CLASS_SETS["ucf14"])
    m = resolve_class_map(load_class_map("ucf14_hmdb7"),
                          Annotations([Sample("a", i) for i in range(7)], list(CLASS_SETS["hmdb7"]), source="h7"), src, 14)
    assert sorted(m) == list(range(7)) and len(set(m.values())) == 7


def test_da_metrics_on_a_hand_checked_example():
    """4 source classes, the target has source classes 1 and 3 (labels already mapped).
    v0: top class 1 = label                 -> right; restricted right
    v1: top class 0 (source-only), label 1  -> wrong (negative transfer); restricted: 0.3 > 0.1 -> right
    v2: top class 1, label 3                -> wrong; restricted wrong
    v3: two views, mean [.1 .1 .45 .35] -> top class 2 (source-only), label 3 -> wrong; restricted right
    top-1 1/4, restricted 3/4, predicted outside the target 2/4."""
    p = {0: [[.1, .6, .1, .2]], 1: [[.5, .3, .1, .1]], 2: [[.1, .5, .1, .3]], 3: [[.1, .1, .7, .1], [.1, .1, .2, .6]]}
    y = {0: 1, 1: 1, 2: 3, 3: 3}
    idx, views, logits, labels = [], [], [], []
    for v, ps in p.items():
        for k, q in enumerate(ps):
            idx.append(v), views.append(k), logits.append(np.log(q)), labels.append(y[v])
    metrics, rows = merge_views(idx, views, np.array(logits), labels, restrict_to=[3, 1, 3])
    assert metrics["top1"] == 25.0 and metrics["top1_target_classes"] == 75.0
    assert metrics["predicted_outside_target"] == 50.0 and metrics["top5"] == 100.0 and metrics["videos"] == 4
    assert [r["pred"] for r in rows] == [1, 0, 1, 2] and [r["pred_target"] for r in rows] == [1, 1, 1, 3]
    plain, _ = merge_views(idx, views, np.array(logits), labels)
    assert plain["top1"] == 25.0 and "top1_target_classes" not in plain


def test_config_field_is_validated():
    cfg = load_config("da_ucf14_hmdb7")
    assert cfg.data.class_map == "ucf14_hmdb7" and cfg.task == "finetune"
    validate_config(cfg)
    with pytest.raises(ConfigError, match=r"data\.class_map: nope\.yaml: no such file"):
        validate_config(load_config("tiny_finetune", ["data.class_map=nope.yaml"]))
    cfg = load_config("da_ucf14_hmdb7")
    cfg.task = "linprobe"
    with pytest.raises(ConfigError, match=r"data\.class_map='ucf14_hmdb7' has no effect on linprobe \(it maps the "
                                          r"classes of the multi-view test, which only finetune and eval run\)"):
        validate_config(cfg)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, videos=24)


def test_class_map_reaches_the_test(synth, tmp_path):
    """mgm eval through two different maps: the predictions CSV carries each map's labels, and the
    restricted metric appears; an unknown class is one line, exit 2."""
    names = (synth / "classes.txt").read_text().split()
    lines = [l for l in (synth / "val.txt").read_text().splitlines() if int(l.split()[1]) in (0, 1)]
    tgt = tmp_path / "target"
    tgt.mkdir()
    (tgt / "test.txt").write_text("".join(f"{synth / l.split()[0]} {l.split()[1]}\n" for l in lines))
    (tgt / "classes.txt").write_text("go_left\ngo_right\n")
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_classifier("vit_tiny", depth=4, patch=8, num_classes=8, num_frames=8, img_size=64),
                           tmp_path / "clf.safetensors", extra={"classes": names})
    common = [f"data.test={tgt / 'test.txt'}", *SMALL, "data.test_clips=1", "data.test_crops=1",
              "optim.batch_size=4", f"model.init={ckpt}"]
    got = {}
    for tag, text in (("a", f"go_left: {names[0]}\ngo_right: {names[1]}\n"), ("b", "go_left: 5\ngo_right: 6\n")):
        (tmp_path / f"{tag}.yaml").write_text(text)
        m = run_eval(load_config("tiny_finetune", [*common, f"data.class_map={tmp_path / f'{tag}.yaml'}",
                                                   f"run.out_dir={tmp_path / tag}"]))
        assert m["target_classes"] == 2 and m["source_classes"] == 8 and "top1_target_classes" in m
        rows = list(csv.DictReader(open(tmp_path / tag / "predictions.csv")))
        got[tag] = [int(r["label"]) for r in rows]
        assert all(int(r["pred_target"]) in ({0, 1} if tag == "a" else {5, 6}) for r in rows)
        assert json.loads((tmp_path / tag / "test_metrics.json").read_text())["class_map"].endswith(f"{tag}.yaml")
    assert got["a"] == [int(l.split()[1]) for l in lines] and got["b"] == [y + 5 for y in got["a"]]

    (tmp_path / "bad.yaml").write_text(f"go_left: {names[0]}\ngo_right: Rowing\n")
    r = run_cli(["eval", "--config", "tiny_finetune", *common, f"data.class_map={tmp_path / 'bad.yaml'}",
                 f"run.out_dir={tmp_path / 'bad'}"])
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "bad.yaml: source class 'Rowing' is not a class of" in err[0] and "clf.safetensors" in err[0]
