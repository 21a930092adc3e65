"""Every config under cluster/ parses, none opens Ray's dashboard (8265), GCS (6379) or client
(10001) ports to the world (Ray's docs: a cluster must not face untrusted networks), and every
node gets raytune-hpo from what exists: the wheel built from the checkout, shipped by the
launcher's file_mounts or baked into the image of cluster/Dockerfile, never from the package
index, which has no raytune-hpo.

The install lines are run as written, through pip's dry run against the wheel built here with
the README's command: `--no-index` (nothing can come from an index), `--no-deps` and
`--ignore-installed` (pip's report then names what the line itself installs, whatever this
environment holds), so nothing is downloaded. The dependencies the nodes need are checked on
the wheel's metadata, and resolved once against this environment, offline."""

import email.parser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sweep_procs import spot_drain

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
CONFIGS = sorted(f.name for f in CLUSTER.glob("*.yaml"))
LAUNCHERS = ("aws-gpu.yaml", "gcp-gpu.yaml")
KUBERAY = ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml")
RAY_PORTS = {8265, 6379, 10001}
WORLD = ("0.0.0.0/0", "::/0")
BUILD = "python -m pip wheel --no-deps -w dist ."  # the README's command, in the repo root
PIP = re.compile(r"^(?:python3? -m )?pip3? install\s+")
# pip install options that take a value (the value is not a requirement).
PIP_VALUE_OPTIONS = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url",
    "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
    "--report", "--platform", "--python-version", "--implementation", "--abi", "--src",
    "--upgrade-strategy", "--progress-bar", "--log", "--cache-dir", "--trusted-host",
    "--proxy", "--timeout", "--retries", "--cert", "--client-cert", "--config-settings",
}  # fmt: skip


def docs(name):
    with open(CLUSTER / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def walk(node, path=()):
    """(path, value) for every leaf of a YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, str(i)))
    else:
        yield path, node


def pip_lines(text):
    """The `pip install` commands of a shell string (split at &&, ||, ;, | and newlines)."""
    segments = re.split(r"\s*(?:&&|\|\||;|\||\n)\s*", str(text))
    return [s.strip() for s in segments if re.search(r"\bpip3? install\b", s)]


def index_requirements(line):
    """The requirements of a pip line that name raytune-hpo instead of a wheel file, i.e. that
    pip would look up on a package index."""
    tokens = shlex.split(PIP.sub("", line.strip(), count=1))
    found, skip = [], False
    for token in tokens:
        if skip or token.startswith("-"):
            skip = not skip and token in PIP_VALUE_OPTIONS
            continue
        if re.sub(r"\[[^\]]*\]$", "", token).endswith(".whl"):
            continue
        try:
            name = Requirement(token).name
        except ValueError:
            continue  # a path or URL, not a name
        if canonicalize_name(name) == "raytune-hpo":
            found.append(token)
    return found


RAY_PIN = re.compile(r"""^["']?ray(\[[\w,]*\])?==([\w.]+)["']?$""")


def ray_pins(line):
    """The Ray versions a pip line pins (``ray[tune,default]==2.60.0``)."""
    tokens = shlex.split(PIP.sub("", line.strip(), count=1))
    return [m.group(2) for t in tokens if (m := RAY_PIN.match(t))]


def installs_ray_only(line):
    """A line that installs exactly one pinned Ray and nothing else."""
    tokens = [t for t in shlex.split(PIP.sub("", line.strip(), count=1)) if not t.startswith("-")]
    return len(tokens) == 1 and bool(ray_pins(line))


def ray_tested_on():
    """The Ray pyproject.toml admits: (the lower bound, the specifier)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (req,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "ray"]
    (low,) = [s.version for s in req.specifier if s.operator == ">="]
    return low, req.specifier


def dry_run(line, tmp_path, *, home=None):
    """Runs one pip line as written, in pip's dry run: returns (process, pip's report)."""
    assert PIP.match(line), f"not a pip install command: {line}"
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    flags = f"--dry-run --no-index --no-deps --ignore-installed --report {report} "
    command = PIP.sub(f"{shlex.quote(sys.executable)} -m pip install {flags}", line, count=1)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if home is not None:
        env["HOME"] = str(home)
    proc = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300
    )
    return proc, (json.loads(report.read_text()) if proc.returncode == 0 else None)


def installs_the_wheel(line, report, wheel, placed):
    """The one distribution the line installs is the wheel at `placed`; returns its extras."""
    items = report["install"]
    assert len(items) == 1, f"{line}: installs {[i['metadata']['name'] for i in items]}"
    (item,) = items
    assert canonicalize_name(item["metadata"]["name"]) == "raytune-hpo", line
    assert item["download_info"]["url"] == Path(placed).as_uri(), f"{line}: not the wheel"
    assert wheel.name.split("-")[1] == item["metadata"]["version"]
    return set(item.get("requested_extras") or [])


def dockerfile():
    """(INSTRUCTION, arguments) of cluster/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (CLUSTER / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [tuple(ln.split(None, 1)) for ln in lines if ln and not ln.startswith("#")]


def kuberay_ray_version():
    versions = set()
    for name in KUBERAY:
        for doc in docs(name):
            spec = doc["spec"].get("rayClusterSpec", doc["spec"])
            versions.add(spec["rayVersion"])
    (version,) = versions
    return version


def readme_image():
    """The image name the README builds and pushes."""
    readme = (CLUSTER / "README.md").read_text()
    build = re.search(r"docker build -f cluster/Dockerfile -t (\S+) dist\b", readme)
    assert build, "cluster/README.md: no `docker build -f cluster/Dockerfile -t IMAGE dist`"
    assert f"docker push {build.group(1)}" in readme
    return build.group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built with the README's command in a copy of the checkout (a build writes
    build/ and *.egg-info next to the sources; the copy keeps them out of the worktree)."""
    assert BUILD in (CLUSTER / "README.md").read_text(), "the README builds the wheel otherwise"
    src = tmp_path_factory.mktemp("checkout") / "raytune-hpo"
    skip = (".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache", "*venv", ".devbundle")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip))
    command = [sys.executable, *shlex.split(BUILD)[1:]]
    proc = subprocess.run(command, cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (src / "dist").glob("*.whl")
    return built


def test_there_are_configs_for_aws_gcp_and_kuberay():
    kinds = {d.get("provider", {}).get("type") or d.get("kind") for n in CONFIGS for d in docs(n)}
    assert {"aws", "gcp", "RayCluster", "RayJob"} <= kinds


@pytest.mark.parametrize("name", CONFIGS)
def test_no_config_opens_ray_ports_to_the_world(name):
    for doc in docs(name):
        leaves = list(walk(doc))
        for path, value in leaves:
            text = str(value)
            assert not any(w in text for w in WORLD), f"{name}: {'.'.join(path)} = {text}"
            if "dashboard-host" in text or (path and path[-1] == "dashboard-host"):
                host = re.search(r"dashboard-host[= ]?\"?([\d.]+)", text)
                host = host.group(1) if host else text
                # On a VM the dashboard stays on loopback (reach it through `ray dashboard`);
                # inside a pod it may bind the pod, which only a ClusterIP service reaches.
                assert host == "127.0.0.1" or doc.get("kind") in ("RayCluster", "RayJob"), (
                    f"{name}: dashboard bound to {host}"
                )
        for path, value in leaves:
            if path and path[-1] in ("serviceType", "type") and "Spec" in ".".join(path):
                assert value == "ClusterIP", f"{name}: {'.'.join(path)} = {value}"
        assert doc.get("kind") not in ("Ingress",), f"{name}: exposes Ray through an Ingress"
        if doc.get("kind") == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"
        for key in ("IpPermissions", "firewall", "sourceRanges", "loadBalancerSourceRanges"):
            assert not any(key in p for p, _ in leaves), f"{name}: opens {key}"


@pytest.mark.parametrize("name", [n for n in CONFIGS if "kuberay" in n])
def test_kuberay_head_service_is_cluster_internal(name):
    for doc in docs(name):
        spec = doc.get("spec", {})
        head = spec.get("headGroupSpec") or spec.get("rayClusterSpec", {}).get("headGroupSpec")
        if head is not None:
            assert head.get("serviceType") == "ClusterIP"


def test_launcher_workers_autoscale_with_gpus():
    for name in LAUNCHERS:
        (doc,) = docs(name)
        workers = {
            k: v for k, v in doc["available_node_types"].items() if k != doc["head_node_type"]
        }
        assert workers and all(w["min_workers"] == 0 < w["max_workers"] for w in workers.values())
        assert doc["available_node_types"][doc["head_node_type"]]["resources"] == {"CPU": 0}


def test_nothing_installs_raytune_hpo_from_the_package_index():
    lines = [(n, ln) for n in CONFIGS for d in docs(n) for _, v in walk(d) for ln in pip_lines(v)]
    lines += [("Dockerfile", ln) for k, a in dockerfile() if k == "RUN" for ln in pip_lines(a)]
    assert lines
    for where, line in lines:
        assert not index_requirements(line), f"{where}: `{line}` asks the package index"


def test_the_checks_catch_the_old_install_line(tmp_path):
    old = 'pip install -U "raytune-hpo[bohb]"'
    assert index_requirements(old) == ["raytune-hpo[bohb]"]
    assert index_requirements("pip install -f dist raytune_hpo==0.1.0") == ["raytune_hpo==0.1.0"]
    assert not index_requirements('pip install --no-deps "/w/raytune_hpo-1-py3-none-any.whl[x]"')
    proc, _ = dry_run(old, tmp_path)
    assert proc.returncode != 0 and "raytune-hpo" in proc.stderr.lower()


def test_wheel_declares_the_bohb_extra_and_what_the_nodes_need(wheel):
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    assert canonicalize_name(meta["Name"]) == "raytune-hpo"
    assert "bohb" in meta.get_all("Provides-Extra")
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    core = {canonicalize_name(r.name): r for r in reqs if r.marker is None}
    bohb = {
        canonicalize_name(r.name)
        for r in reqs
        if r.marker is not None
        and r.marker.evaluate({"extra": "bohb"})
        and not r.marker.evaluate({"extra": ""})
    }
    assert {"hpbandster", "configspace"} <= bohb
    assert {"ray", "torch", "optuna", "scikit-learn"} <= set(core)
    assert {"tune", "default"} <= core["ray"].extras  # Tune, and the Job Submission server


def test_wheel_with_bohb_resolves_offline_against_this_environment(wheel):
    """All the wheel's requirements, the bohb extra's included, are met by the versions this
    project is tested with (no index: pip may only use what is installed here)."""
    pytest.importorskip("hpbandster")
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index"]
    proc = subprocess.run([*command, f"{wheel}[bohb]"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Would install raytune-hpo-" in proc.stdout


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_nodes_install_the_shipped_wheel_with_bohb(name, wheel, tmp_path):
    (doc,) = docs(name)
    home = tmp_path / "home"  # the node's home: file_mounts' `~/...` land here
    placed = {}
    for remote, local in doc.get("file_mounts", {}).items():
        if local.endswith(".whl"):
            # relative to the repository root, where the README runs `ray up`
            assert local == f"dist/{wheel.name}", f"{name}: ships {local}, the build writes it"
            assert remote.startswith("~/"), f"{name}: {remote}"
            placed[remote] = home / remote[2:]
            placed[remote].parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(wheel, placed[remote])
    assert len(placed) == 1, f"{name}: file_mounts ship {len(placed)} wheels"
    (node_wheel,) = placed.values()
    lines = [ln for cmd in doc["setup_commands"] for ln in pip_lines(cmd)]
    lines = [ln for ln in lines if not installs_ray_only(ln)]  # test_one_ray_everywhere
    assert lines, f"{name}: setup_commands install nothing"
    extras = set()
    for line in lines:
        proc, report = dry_run(line, tmp_path, home=home)
        assert proc.returncode == 0, f"{name}: `{line}`\n{proc.stderr[-3000:]}"
        extras |= installs_the_wheel(line, report, wheel, node_wheel)
    assert "bohb" in extras, f"{name}: no setup command installs the bohb extra"
    # pip skips a wheel whose version is installed: a rebuilt wheel must still replace it
    assert any("--force-reinstall" in ln and "--no-deps" in ln for ln in lines), name


def test_dockerfile_installs_the_wheel_with_bohb_on_the_manifests_ray(wheel, tmp_path):
    instructions = dockerfile()
    defaults = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    froms = [a for k, a in instructions if k == "FROM"]
    assert len(froms) == 1, "one stage"
    image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], froms[0].split()[0])
    repo, tag = image.rsplit(":", 1)
    # Ray's own image: ray-ml is no longer published after 2.49 (ray-project/ray#57070).
    assert repo == "rayproject/ray", image
    assert tag.split("-")[0] == kuberay_ray_version(), f"{image}: not the manifests' Ray"
    assert tag.endswith("-gpu"), f"{image}: the workers have GPUs"
    copies = [shlex.split(a) for k, a in instructions if k in ("COPY", "ADD")]
    # The README's build context is dist/: the wheel is copied by its file name.
    dests = [c[-1] for c in copies if c[:-1] == [wheel.name]]
    assert len(dests) == 1, f"Dockerfile: no COPY of {wheel.name}"
    dest = dests[0] if not dests[0].endswith("/") else dests[0] + wheel.name
    node_wheel = tmp_path / "image" / dest.lstrip("/")
    node_wheel.parent.mkdir(parents=True)
    shutil.copy(wheel, node_wheel)
    lines = [ln for k, a in instructions if k == "RUN" for ln in pip_lines(a)]
    lines = [ln for ln in lines if not installs_ray_only(ln)]  # test_one_ray_everywhere
    assert lines, "Dockerfile: no pip install"
    extras = set()
    for line in lines:
        assert dest in line, f"Dockerfile: `{line}` does not install the copied wheel"
        proc, report = dry_run(line.replace(dest, str(node_wheel)), tmp_path)
        assert proc.returncode == 0, f"Dockerfile: `{line}`\n{proc.stderr[-3000:]}"
        extras |= installs_the_wheel(line, report, wheel, node_wheel)
    assert "bohb" in extras, "Dockerfile: the wheel is installed without the bohb extra"


def test_kuberay_pods_run_the_image_the_readme_builds(wheel):
    image = readme_image()
    assert image.endswith(f"/raytune-hpo:{wheel.name.split('-')[1]}"), image
    for name in KUBERAY:
        leaves = [(p, v) for d in docs(name) for p, v in walk(d)]
        images = {v for p, v in leaves if p[-1] == "image"}
        assert images == {image}, f"{name}: runs {images}"
        starts = [v for p, v in leaves if {"command", "args"} & set(p)]
        assert not [ln for v in starts for ln in pip_lines(v)], f"{name}: installs at start"


def gpu_worker_types(name):
    (doc,) = docs(name)
    head = doc["head_node_type"]
    return {k: v for k, v in doc["available_node_types"].items() if k != head}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_configs_pass_rays_own_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    (doc,) = docs(name)
    validate_config(prepare_config(doc))  # offline: Ray's defaults and its JSON schema


@pytest.mark.parametrize("name", LAUNCHERS)
def test_gpu_node_types_declare_what_one_node_offers(name):
    """The autoscaler plans with a node type's `resources`; Google Cloud's provider detects
    none (without them a GPU trial never makes it add a node), and raytune-hpo refuses a trial
    no node type can hold by reading them. tests/test_autoscale.py simulates these types."""
    for node_type, t in gpu_worker_types(name).items():
        declared = t.get("resources", {})
        assert set(declared) == {"CPU", "GPU", "memory"}, f"{name}: {node_type}: {declared}"
        assert declared["GPU"] >= 1 and declared["CPU"] >= 1, f"{name}: {node_type}"
        assert 2**30 <= declared["memory"] == int(declared["memory"]), f"{name}: {node_type}"


@pytest.mark.parametrize("name", LAUNCHERS)
def test_trials_the_node_types_hold_pass_and_others_are_refused_naming_the_field(name):
    from raytune_hpo.errors import UserError
    from raytune_hpo.run.resources import check_node_types, node_types_of
    from raytune_hpo.sweep.spec import ResourcesSpec

    (doc,) = docs(name)
    types = node_types_of(doc)
    assert set(types) == {doc["head_node_type"], *gpu_worker_types(name)}
    most = max(t["GPU"] for t in types.values())
    for fits in ({"gpu": 0.25}, {"gpu": 1, "cpu": 4}, {"gpu": most}, {"cpu": 2, "memory_gb": 8}):
        check_node_types(ResourcesSpec(**fits), types)  # the autoscaler adds a node for it
    for asked, field in (
        ({"gpu": most + 1}, "resources.gpu"),
        ({"gpu": 1, "cpu": 1000}, "resources.cpu"),
        ({"gpu": 1, "memory_gb": 10_000}, "resources.memory_gb"),
    ):
        with pytest.raises(UserError) as e:
            check_node_types(ResourcesSpec(**asked), types)
        assert e.value.dotted_field == field, str(e.value)
        for node_type in gpu_worker_types(name):  # the message lists what there is
            assert node_type in e.value.message
    # A node alive now (not in the config: joined by hand) counts as well.
    big = {"CPU": 2000.0, "GPU": 1.0, "memory": 2.0**40}
    check_node_types(ResourcesSpec(gpu=1, cpu=1000), types, [big])


@pytest.mark.parametrize(("name", "cloud"), [("aws-gpu.yaml", "aws"), ("gcp-gpu.yaml", "gcp")])
def test_launcher_workers_run_the_spot_drain_for_their_cloud(name, cloud):
    (doc,) = docs(name)
    assert doc["file_mounts"]["~/raytune-hpo-dist/spot_drain.py"] == "cluster/spot_drain.py"
    starts = doc["worker_start_ray_commands"]
    ray_start = next(i for i, c in enumerate(starts) if "ray start" in c)
    (watch,) = [c for c in starts[ray_start:] if "spot_drain.py" in c]  # after ray start
    assert f"spot_drain.py {cloud} " in watch and watch.rstrip().endswith("&"), watch


class Metadata:
    """A local HTTP server answering as a cloud's instance metadata does (the notice is set by
    the test): AWS's IMDSv2 (token, then spot/instance-action or 404), Google's preempted."""

    def __init__(self):
        import http.server
        import threading

        self.action: str | None = None  # AWS: the instance-action JSON once interrupted
        self.preempted = "FALSE"
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server's name
                ok = self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                )
                self._send(200 if ok else 400, "tok")

            def do_GET(self):  # noqa: N802
                if self.path.startswith("/latest/meta-data/spot/instance-action"):
                    if self.headers.get("X-aws-ec2-metadata-token") != "tok":
                        return self._send(401, "")
                    return (
                        self._send(404, "")
                        if outer.action is None
                        else self._send(200, outer.action)
                    )
                if (
                    self.path.startswith("/preempted")
                    and self.headers.get("Metadata-Flavor") == "Google"
                ):
                    return self._send(200, outer.preempted)
                return self._send(404, "")

            def _send(self, code, body):
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_spot_drain_reads_the_interruption_notices_and_drains_before_the_end():
    import datetime

    drain = spot_drain()
    md = Metadata()
    try:
        assert drain.aws_notice(f"{md.url}/latest") is None  # no interruption: keep polling
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120)
        md.action = json.dumps({"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")})
        left = drain.aws_notice(f"{md.url}/latest")
        assert 110 < left <= 120
        assert drain.gcp_notice(f"{md.url}/preempted", wait_s=1) is None
        md.preempted = "TRUE"
        assert drain.gcp_notice(f"{md.url}/preempted", wait_s=1) == drain.GCP_NOTICE_S
    finally:
        md.server.shutdown()
    command = drain.drain_command(left, "--node-id=abc")
    assert command[:2] == ["ray", "drain-node"] and "--node-id=abc" in command
    assert "--reason=DRAIN_NODE_REASON_PREEMPTION" in command  # what Tune does not count
    (deadline,) = [int(c.split("=")[1]) for c in command if c.startswith("--deadline")]
    assert 0 < deadline < left  # Ray infers a preemption only for a node dead after it
    assert drain.main(["azure"]) == 2


def test_one_ray_everywhere():
    """pyproject.toml declares the Ray range the package is tested on, with an upper bound;
    this environment runs its lower bound, and so does every node we ship: the launcher
    configs install exactly it on every node before the wheel, the Dockerfile starts from
    Ray's image of it and pins it again, the KubeRay manifests say it (rayVersion)."""
    from raytune_hpo import ray_compat

    version, specifier = ray_tested_on()
    assert any(s.operator in ("<", "<=") for s in specifier), f"ray{specifier}: no upper bound"
    import ray

    assert ray.__version__ == version == ray_compat.WRITTEN_FOR
    found = {}
    for name in LAUNCHERS:
        (doc,) = docs(name)
        lines = [ln for cmd in doc["setup_commands"] for ln in pip_lines(cmd)]
        first_ray = next(i for i, ln in enumerate(lines) if installs_ray_only(ln))
        wheel_at = next(i for i, ln in enumerate(lines) if ".whl" in ln)
        assert first_ray < wheel_at, f"{name}: Ray is pinned after the wheel is installed"
        found[name] = {v for ln in lines for v in ray_pins(ln)}
    instructions = dockerfile()
    (base,) = [a for k, a in instructions if k == "FROM"]
    found["Dockerfile FROM"] = {base.split(":", 1)[1].split("-")[0]}
    found["Dockerfile pip"] = {
        v for k, a in instructions if k == "RUN" for ln in pip_lines(a) for v in ray_pins(ln)
    }
    found["KubeRay rayVersion"] = {kuberay_ray_version()}
    assert all(v == {version} for v in found.values()), (version, found)
    # Nothing installs a Ray unpinned or pinned otherwise.
    every = [(n, ln) for n in CONFIGS for d in docs(n) for _, v in walk(d) for ln in pip_lines(v)]
    for where, line in every:
        named = [t for t in shlex.split(line) if re.match(r"""^["']?ray\b(?!-)""", t)]
        assert all(ray_pins(t) == [version] for t in named), f"{where}: {line}"


def test_the_pin_checks_have_teeth():
    assert ray_pins('pip install "ray[tune,default]==2.60.0"') == ["2.60.0"]
    assert installs_ray_only('pip install "ray[tune,default]==2.60.0"')
    assert not installs_ray_only('pip install "ray[tune]==2.60.0" "/w/x.whl[bohb]"')
    assert ray_pins('pip install "ray[tune]>=2.40"') == []
    assert not ray_pins('pip install "$HOME/raytune_hpo-0.1.0-py3-none-any.whl[bohb]"')


def test_launcher_configs_turn_token_authentication_on():
    """The head makes the cluster's token with Ray's own command before it starts; every
    `ray start` and the spot drain (its `ray drain-node` talks to the GCS) run in token mode;
    the launcher copies the head's token to the workers. tests/test_cluster.py runs these
    commands on loopback."""
    for name in LAUNCHERS:
        (doc,) = docs(name)
        head, workers = doc["head_start_ray_commands"], doc["worker_start_ray_commands"]
        make = next(i for i, c in enumerate(head) if "ray get-auth-token --generate" in c)
        start = next(i for i, c in enumerate(head) if "ray start --head" in c)
        assert make < start and "> /dev/null" in head[make], f"{name}: {head[make]}"  # no echo
        for command in [*head, *workers]:
            if re.search(r"\bray start\b|spot_drain\.py \w", command):
                assert re.search(r"(^|\s)RAY_AUTH_MODE=token \S", command), f"{name}: {command}"
        assert doc["cluster_synced_files"] == ["~/.ray/auth_token"], name


def test_the_launcher_configs_start_ray_the_same_way():
    """aws-gpu.yaml and gcp-gpu.yaml differ only in the cloud their spot drain watches:
    tests/test_cluster.py starts its head with one's commands and its worker with the other's."""
    (aws,), (gcp,) = docs("aws-gpu.yaml"), docs("gcp-gpu.yaml")
    for key in ("head_start_ray_commands", "setup_commands", "cluster_synced_files"):
        assert aws[key] == gcp[key], key
    same = [
        c.replace("spot_drain.py aws", "spot_drain.py gcp")
        for c in aws["worker_start_ray_commands"]
    ]
    assert same == gcp["worker_start_ray_commands"]
