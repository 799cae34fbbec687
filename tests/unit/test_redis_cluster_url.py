"""Redis Cluster URLs and key layout: parsed without I/O, bad layouts refused."""

from __future__ import annotations

import logging
import socket

import pytest

from celeriac.engines import engine_for
from celeriac.engines.redis import cluster
from celeriac.engines.redis.connection import endpoint_for, parse_redis_url
from celeriac.engines.redis.scripts import RedisKeys
from celeriac.exceptions import ImproperlyConfigured

try:
    from redis.crc import key_slot
except ImportError:  # pragma: no cover - redis is a dev dependency
    pytest.skip("redis-py is not installed", allow_module_level=True)


def test_seeds_credentials_and_tls() -> None:
    settings = parse_redis_url("rediss+cluster://bob:s%40cret@10.0.0.1:7000,10.0.0.2:7001/")
    assert settings.cluster == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert settings.connection["username"] == "bob"
    assert settings.connection["password"] == "s@cret"
    assert settings.tls and settings.connection["ssl"] is True
    assert endpoint_for(settings) is None  # no fixed endpoint: the slot owner is looked up


def test_both_schemes_name_the_redis_engine() -> None:
    for url in ("redis+cluster://h:1/", "rediss+cluster://h:1/"):
        found = engine_for(url)
        assert found is not None and found.name == "redis"


def test_each_store_has_its_own_tag_before_the_global_prefix() -> None:
    url = "redis+cluster://127.0.0.1:7000/"
    opts = {"global_keyprefix": "app:"}
    broker = parse_redis_url(url, opts)
    results = parse_redis_url(url, opts, store="results")
    beat = parse_redis_url(url, opts, store="schedules")
    assert broker.key_prefix == "{celeriac}app:"
    assert results.key_prefix == "{celeriac_results}app:"
    assert beat.key_prefix == "{celeriac-beat}app:"
    thirds = {key_slot(p.key_prefix.encode()) * 3 // 16384 for p in (broker, results, beat)}
    assert thirds == {0, 1, 2}, "the default tags should spread over three primaries"
    tagged = parse_redis_url(url, {"cluster_hash_tag": "jobs"})
    assert tagged.key_prefix == "{jobs}"


def test_every_transport_key_shares_the_slot() -> None:
    settings = parse_redis_url("redis+cluster://127.0.0.1:7000/", {"global_keyprefix": "p:"})
    keys = RedisKeys(settings.key_prefix)
    names = [keys.unacked, keys.unacked_index, keys.delayed_index, keys.revoked,
             keys.lease("c1"), keys.notify("a"), keys.delayed("b"), keys.binding("celery"),
             *keys.buckets("a"), *keys.buckets("b")]  # fmt: skip
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_plain_redis_names_are_unchanged() -> None:
    settings = parse_redis_url("redis://127.0.0.1:6379/3", {"global_keyprefix": "p:"})
    assert settings.key_prefix == "p:" and settings.cluster == ()
    assert RedisKeys(settings.key_prefix).unacked == "p:unacked"


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("redis+cluster://h:7000/2", {}, "db 0"),
        ("redis+cluster://h:7000/?db=1", {}, "db 0"),
        ("redis+cluster://h:7000/", {"cluster_hash_tag": ""}, "cluster_hash_tag"),
        ("redis+cluster://h:7000/", {"cluster_hash_tag": "a}b"}, "cluster_hash_tag"),
        ("redis+cluster://h:7000/", {"global_keyprefix": "{app}:"}, "global_keyprefix"),
        ("redis+cluster://h:7000/", {"master_name": "mymaster"}, "master_name"),
        ("redis+cluster:///", {}, "seed"),
        ("redis+cluster://h:port/", {}, "seed"),
    ],
)
def test_bad_layouts_refused(url: str, options: dict[str, str], named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        parse_redis_url(url, options)


def test_a_prefix_with_lone_braces_is_kept() -> None:
    """Only a complete ``{tag}`` in the prefix would be ignored; ``{}`` or ``{`` are names."""
    settings = parse_redis_url("redis+cluster://h:7000/", {"global_keyprefix": "a{}b{"})
    assert settings.key_prefix == "{celeriac}a{}b{"


def test_unreachable_seed_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        alive = listening.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]  # bound, never listening: refused
            seeds = [("127.0.0.1", dead), ("127.0.0.1", alive)]
            with caplog.at_level(logging.WARNING, logger=cluster.__name__):
                expected = (("127.0.0.1", alive), ("127.0.0.1", dead))  # reachable first
                assert cluster.reachable_seeds(seeds, 1.0) == expected
                assert cluster.reachable_seeds(seeds, 1.0) == expected
    warnings = [r for r in caplog.records if f":{dead} unreachable" in r.getMessage()]
    assert len(warnings) == 1
