"""A loopback stand-in for GitHub's release API, for benchmarks (bench/upgrade_latency.py).

Serves `GET /repos/{owner}/{repo}/releases/tags/{tag}` with one zip asset per release and the
assets themselves under /download/, on 127.0.0.1 only. Each zip holds a copy of the core-node
simulator as `zeta` and a `sim-options` file, so an installed folder is the same as a prepared
one (the simulator reads its options from the file beside it).
"""
import hashlib, http.server, io, json, platform, threading, zipfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
ASSET = f"zeta-linux-{ARCH}.zip"


def release_zip(sim_binary, options):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        info = zipfile.ZipInfo("zeta")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, sim_binary)
        archive.writestr("sim-options", options + "\n")
    return buffer.getvalue()


class FakeGithub:
    def __init__(self, owner="zeta-protocol", repo="zeta"):
        self.owner, self.repo = owner, repo
        self.assets = {}   # tag -> bytes
        self.lookups = 0   # release lookups answered
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                prefix = f"/repos/{fake.owner}/{fake.repo}/releases/tags/"
                if self.path.startswith(prefix):
                    fake.lookups += 1
                    tag = self.path[len(prefix):]
                    data = fake.assets.get(tag)
                    if data is None:
                        return self.reply(404, b'{"message":"Not Found"}', "application/json")
                    body = json.dumps({"tag_name": tag, "assets": [{
                        "name": ASSET,
                        "url": f"{fake.url}/assets/{tag}",
                        "browser_download_url": f"{fake.url}/download/{tag}/{ASSET}",
                        "content_type": "application/zip",
                        "size": len(data),
                        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                    }]}).encode()
                    return self.reply(200, body, "application/json")
                if self.path.startswith("/download/"):
                    tag = self.path.split("/")[2]
                    data = fake.assets.get(tag)
                    if data is not None:
                        return self.reply(200, data, "application/zip")
                self.reply(404, b"not found", "text/plain")

            def reply(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, tag, data):
        self.assets[tag] = data

    def close(self):
        self.server.shutdown()
