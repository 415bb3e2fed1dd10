#!/usr/bin/env python3
"""Memory while auto-install streams a large release: `visor prepare` fetches a zip holding
the simulator and a SIZE MiB payload from a loopback stand-in for GitHub
(bench/fake_github.py), and /usr/bin/time -v reports its peak resident memory. The download
and the extraction stream through fixed buffers, so the peak should not grow with SIZE.

Usage: bench/install_footprint.py [SIZE_MIB ...]   (default: 1 64 256)
"""
import io, os, re, shutil, subprocess, sys, tempfile, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_github import FakeGithub  # noqa: E402


def release_zip(sim_binary, payload_mib):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        info = zipfile.ZipInfo("zeta")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, sim_binary)
        archive.writestr("sim-options", "--sim-version v2\n")
        # Incompressible, so the download is as large as the payload.
        archive.writestr("payload.bin", os.urandom(payload_mib << 20), zipfile.ZIP_STORED)
    return buffer.getvalue()


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1, 64, 256]
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                   cwd=ROOT, check=True)
    visor = os.path.join(ROOT, "target/release/visor")
    sim_binary = open(os.path.join(ROOT, "target/release/zeta-core-sim"), "rb").read()
    print("| release size | peak RSS of `visor prepare` | wall time |")
    print("|---|---|---|")
    for size in sizes:
        work = tempfile.mkdtemp(prefix="visor-install-")
        home = os.path.join(work, "home")
        os.makedirs(os.path.join(home, "genesis"))
        os.symlink(os.path.join(ROOT, "target/release/zeta-core-sim"), os.path.join(home, "genesis/zeta"))
        open(os.path.join(home, "genesis/run-config.toml"), "w").write(
            'name = "v1"\n[zeta.binary]\npath = "zeta"\nargs = ["start"]\n'
            f'[zeta.rpc]\nsocketPath = "{work}/core.sock"\nhttpPath = "/rpc"\n')
        github = FakeGithub()
        data = release_zip(sim_binary, size)
        github.publish("v2", data)
        open(os.path.join(home, "config.toml"), "w").write(f'[autoInstall]\napiUrl = "{github.url}"\n')
        out = subprocess.run(["/usr/bin/time", "-v", visor, "prepare", "v2", "--home", home],
                             capture_output=True, text=True, env=dict(os.environ, NO_PROXY="*"))
        if out.returncode != 0:
            sys.exit(f"prepare failed:\n{out.stderr}")
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
        print(f"| {len(data) / (1 << 20):.0f} MiB | {int(rss):,} KiB | {wall} |")
        github.close()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
