"""Fixtures of the agent tests: a small simulated image and a loopback OpenAI-compatible server."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture(scope="session")
def srtio3_image():
    """A noisy SrTiO3 [001] image from the fast incoherent model (a = 3.905 Å)."""
    from pymatgen.core import Lattice, Structure

    from napari_automat.simulate import incoherent_image

    sto = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    return incoherent_image(sto, (0, 0, 1), pixel_size_A=0.15, field_of_view_A=40, dose=5e4, seed=1)


def completion(message: dict) -> tuple:
    """A 200 reply holding one chat completion choice with ``message``."""
    return 200, {}, {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-model",
                     "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                  "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}]}


def tool_calls(*calls) -> tuple:
    """A reply calling tools: each ``(name, arguments)``, arguments a JSON value or a raw string."""
    return completion({"content": None, "tool_calls": [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]})


def text(content: str) -> tuple:
    """A reply with the model's final words."""
    return completion({"content": content})


#: Tool calls that run the whole chain (no energy), one stage per reply.
CHAIN = [tool_calls(("denoise", {"method": "auto"})), tool_calls(("detect_columns", {})),
         tool_calls(("fit_lattice", {})), tool_calls(("retrieve_templates", {"elements": ["Sr", "Ti", "O"]})),
         tool_calls(("reconstruct", {"candidate_index": 0}))]


class LoopbackLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 answering from ``script``: each
    entry ``(status, headers, body)`` (a dict body is sent as JSON, a str as it is) or ``"hang"``
    (no answer until the test ends). An empty script answers "done"."""

    def __init__(self):
        self.script, self.requests, self.times, self.released = [], [], [], threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                owner.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                owner.times.append(time.monotonic())
                reply = owner.script.pop(0) if owner.script else text("done")
                if reply == "hang":
                    owner.released.wait(30)
                    return
                status, headers, body = reply
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback():
    server = LoopbackLLM()
    yield server
    server.close()
