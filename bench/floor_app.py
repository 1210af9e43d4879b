"""The floor: a bare ASGI app answering a small JSON body, served exactly like the FHIR server."""

BODY = b'{"resourceType":"Patient","id":"floor","active":true}'
HEADERS = [(b"content-type", b"application/fhir+json; charset=utf-8")]


async def lifespan(receive, send):
    """Acknowledge start-up and shut-down (the reference apps have nothing to prepare)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        more = True
        while more:
            more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
