"""A frame write cancelled at the wrong moment must not break the connection: our Yamux
writes frames through our Noise without a checkpoint, and a cancel pending when the frame
was sealed spent a nonce on a message never sent, so the peer failed to decrypt everything
after it (two real hosts over TCP, Noise, our Yamux)."""

from __future__ import annotations

import trio
from test_multistream_fast import PROTOCOL, _pair

from ipfs_kit_node.transport import yamux as our_yamux


async def _survives(cancel_by_deadline: bool) -> bool:
    async with _pair() as (client, server, _):
        conn = client.get_network().get_connections(server.get_id())[0].muxed_conn
        assert isinstance(conn, our_yamux.Yamux)
        stream = await client.new_stream(server.get_id(), [PROTOCOL])
        await stream.write(b"a")
        assert await stream.read(100) == b"echo:a"
        parked = await client.new_stream(server.get_id(), [PROTOCOL])
        parked.muxed_stream.send_window = 0  # out of credit: the write waits for some
        scope = trio.CancelScope()

        async def writer() -> None:
            with scope:
                await parked.write(b"x" * 100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.05)
            parked.muxed_stream.send_window = 1000  # credit arrives (wakes the writer)...
            if cancel_by_deadline:  # ...in the same turn as its deadline
                scope.deadline = trio.current_time()
            else:
                scope.cancel()
        with trio.fail_after(10):
            again = await client.new_stream(server.get_id(), [PROTOCOL])
            await again.write(b"ok")
            return bool(await again.read(100) == b"echo:ok")


async def test_a_write_cancelled_as_credit_arrives_keeps_the_connection() -> None:
    assert await _survives(cancel_by_deadline=False)
    assert await _survives(cancel_by_deadline=True)
