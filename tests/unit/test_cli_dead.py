"""``celeriac dead purge``: deletes the dead letters named, or all with --all, and says how
many; without either it refuses."""

from __future__ import annotations

import asyncio
import uuid

from click.testing import CliRunner

from celeriac.cli.main import cli
from celeriac.protocol.envelope import Envelope
from celeriac.transport import transport_from_url
from celeriac.transport.base import Outgoing


async def _bury(url: str, count: int) -> list[str]:
    transport = transport_from_url(url)
    await transport.connect()
    try:
        queue = "cli-dead"
        envelopes = [Envelope(body=b"{}", headers={"id": str(n)}) for n in range(count)]
        await transport.publish([Outgoing(env, routing_key=queue) for env in envelopes])
        for delivery in await transport.fetch([queue], limit=count, timeout=5):
            await transport.dead_letter(delivery, "poison")
        return [letter.id for letter in await transport.list_dead()]
    finally:
        await transport.close()


def test_dead_purge_deletes_the_named_letters_then_all() -> None:
    url = f"memory://cli-dead-{uuid.uuid4().hex}"
    ids = asyncio.run(_bury(url, 3))
    assert len(ids) == 3
    runner = CliRunner()
    refused = runner.invoke(cli, ["-b", url, "dead", "purge"])
    assert refused.exit_code != 0 and "--all" in refused.output
    one = runner.invoke(cli, ["-b", url, "dead", "purge", ids[0]])
    assert one.exit_code == 0 and "Deleted 1 message(s)." in one.output, one.output
    listed = runner.invoke(cli, ["-b", url, "dead", "list"]).output
    assert ids[0] not in listed and ids[1] in listed and "2 dead letter(s)" in listed
    rest = runner.invoke(cli, ["-b", url, "dead", "purge", "--all"])
    assert rest.exit_code == 0 and "Deleted 2 message(s)." in rest.output, rest.output
    assert "0 dead letter(s)" in runner.invoke(cli, ["-b", url, "dead", "list"]).output
