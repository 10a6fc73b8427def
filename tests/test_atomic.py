from kaggle_kit.atomic import atomic_write_json, remove_stale_temps


def test_stale_temps_of_several_names_go_and_nothing_else_does(tmp_path):
    left = [".report.json.k1ll3d00.tmp", ".stage1.pth.abcd_123.tmp"]
    kept = [".other.json.abcdefgh.tmp", ".report.json.short.tmp", "report.json", ".stage1.pth.abcdefgh.tmp.bak"]
    for name in left + kept:
        (tmp_path / name).write_text("{")

    removed = remove_stale_temps(tmp_path / "report.json", r"report\.json|stage[12]\.pth")  # an alternation

    assert sorted(p.name for p in removed) == sorted(left)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_one_name_by_default(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / ".a.json.zzzzzzzz.tmp").write_text("{")
    (tmp_path / ".b.json.zzzzzzzz.tmp").write_text("{")

    assert [p.name for p in remove_stale_temps(tmp_path / "a.json")] == [".a.json.zzzzzzzz.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.json.zzzzzzzz.tmp", "a.json"]
