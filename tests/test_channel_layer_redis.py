"""With REDIS_URL set, a websocket consumer waiting on the Redis channel layer survives idle time.

It waits with blocking pops of ``brpop_timeout`` (5 s) each; with redis-py 8's default 5 s
socket timeout the read timed out as the pop ended, and the consumer died with it.
"""
import asyncio

import pytest

pytestmark = pytest.mark.integration


def test_a_consumer_waits_through_several_blocking_pops_for_its_next_message(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: scripts/test.sh runs it in pass 2, on Redis")
    from channels.layers import channel_layers

    layer = channel_layers.make_backend("default")  # as configured in settings.CHANNEL_LAYERS

    async def idle_then_news():
        channel = await layer.new_channel()

        async def later():
            await asyncio.sleep(2 * layer.brpop_timeout + 1)
            await layer.send(channel, {"type": "news"})

        sender = asyncio.create_task(later())
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout=30)
        finally:
            sender.cancel()

    assert asyncio.run(idle_then_news()) == {"type": "news"}
