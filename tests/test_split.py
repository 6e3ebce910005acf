"""colorize.split: the split and shard of a photo depend only on its relative path (and the seed)."""

from collections import Counter

from colorize.split import assign

SHARDS = {"train": 8, "val": 2, "test": 2}


def _assign_all(paths, seed=0):
    return {
        p: assign(p, val_fraction=0.1, test_fraction=0.1, shards=SHARDS, seed=seed) for p in paths
    }


def test_split_is_deterministic_and_independent_of_the_rest_of_the_set():
    paths = [f"photos/{i:05d}.jpg" for i in range(5000)]
    a = _assign_all(paths)
    assert a == _assign_all(list(reversed(paths)))  # order does not matter
    more = _assign_all(paths + ["photos/new.jpg"])
    changed = {p for p in paths if more[p] != a[p]}
    assert not changed  # adding one image moves no other image: it changes one shard
    assert _assign_all(paths, seed=1) != a  # the seed does change the assignment


def test_fractions_and_shards_are_respected():
    a = _assign_all([f"x/{i}.png" for i in range(20000)])
    splits = Counter(s for s, _ in a.values())
    assert abs(splits["val"] / 20000 - 0.1) < 0.01 and abs(splits["test"] / 20000 - 0.1) < 0.01
    for split, n in SHARDS.items():
        shards = Counter(k for s, k in a.values() if s == split)
        assert set(shards) == set(range(n))
        assert max(shards.values()) < 1.2 * min(shards.values())  # roughly balanced


def test_stratified_split_gives_every_source_its_share_and_a_test_photo():
    from colorize.split import assign_stratified

    sources = {
        "big": [f"big/{i}.jpg" for i in range(200)],
        "small": ["small/a.jpg", "small/b.jpg", "small/c.jpg"],
        "one": ["one/x.jpg"],
    }
    shards = {"train": 4, "val": 2, "test": 1}
    got = assign_stratified(sources, val_fraction=0.1, test_fraction=0.05, shards=shards, seed=0)
    assert set(got) == {r for rels in sources.values() for r in rels}
    splits = {name: [got[r][0] for r in rels] for name, rels in sources.items()}
    assert (
        splits["big"].count("test") == 10 and splits["big"].count("val") == 20
    )  # exactly round(n * fraction)
    assert sorted(splits["small"]) == [
        "test",
        "train",
        "val",
    ]  # a small source still gets a test photo
    assert splits["one"] == ["train"]  # a single photo trains
    assert all(0 <= got[r][1] < shards[got[r][0]] for r in got)
    again = assign_stratified(
        dict(reversed(list(sources.items()))),
        val_fraction=0.1,
        test_fraction=0.05,
        shards=shards,
        seed=0,
    )
    assert again == got  # deterministic, whatever the order of the sources
    other = assign_stratified(sources, val_fraction=0.1, test_fraction=0.05, shards=shards, seed=1)
    assert other != got
