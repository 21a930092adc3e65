"""Secrets stay where they belong, checked in process (no Ray is started): the values of a
sweep's runtime_env.env_vars in no text form of the sweep and not in a job's runtime
environment, but back where a driver or a resume needs them; credentials a storage URI carries
in no message; a storage key with `..` lands nowhere; the cluster's token never over plain http
to another host. tests/test_cluster.py checks the same end to end on a real cluster."""

from __future__ import annotations

import uuid

import pytest
import yaml

from raytune_hpo import secret_env, storage
from raytune_hpo.errors import UserError
from raytune_hpo.jobs import client as jobs
from raytune_hpo.sweep.spec import SweepSpec

SECRET = "sk-live-0123456789abcdef"


def sweep(**env_vars) -> SweepSpec:
    return SweepSpec.from_dict(
        {
            "name": "s",
            "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}},
            "trainable": {"model": "mlp", "epochs": 1},
            "runtime_env": {"env_vars": env_vars, "pip": ["lightgbm"]},
        }
    )


def test_no_text_form_of_a_sweep_holds_its_env_values():
    spec = sweep(API_KEY=SECRET, OMP_NUM_THREADS="1")
    text = spec.to_yaml(absolute_code_dir=True)  # what sweep.yaml in a sweep directory holds
    assert SECRET not in text
    env = yaml.safe_load(text)["runtime_env"]
    hidden = {"API_KEY": "<not stored>", "OMP_NUM_THREADS": "<not stored>"}
    assert env == {"env_vars": hidden, "pip": ["lightgbm"]}
    assert spec.runtime_env["env_vars"]["API_KEY"] == SECRET  # the spec in memory keeps it
    # A submitted job's runtime environment (what `ray job list` shows) has names only.
    job_env = jobs.runtime_env(spec)
    assert SECRET not in repr(job_env) and "API_KEY" in repr(job_env)
    assert set(job_env["env_vars"]) == {jobs.SWEEP_ENV, "PYTHONUNBUFFERED"}
    assert job_env["pip"] == ["lightgbm"]
    # The user's own PYTHONUNBUFFERED wins (the driver adds it to the job's: no key twice).
    assert "PYTHONUNBUFFERED" not in jobs.runtime_env(sweep(PYTHONUNBUFFERED="0"))["env_vars"]


def test_the_values_ship_in_a_package_of_the_job_and_come_back_in_the_driver(tmp_path, monkeypatch):
    package = secret_env.ship({"API_KEY": SECRET}, tmp_path)
    assert package.name == secret_env.PACKAGE and (package / "__init__.py").is_file()
    assert oct((package / "env.json").stat().st_mode)[-3:] == "600"
    assert secret_env.shipped() == {}  # not on the path: not a job's driver
    monkeypatch.syspath_prepend(str(tmp_path))  # Ray puts a job's py_modules on its path
    assert secret_env.shipped() == {"API_KEY": SECRET}
    monkeypatch.delenv("API_KEY", raising=False)
    hidden = {"API_KEY": secret_env.REDACTED, "PLAIN": "1"}
    assert secret_env.reveal(hidden) == {"API_KEY": SECRET, "PLAIN": "1"}
    # Two packages of one content differ (a salt): the hash Ray lists tells nothing.
    (tmp_path / "again").mkdir()
    other = secret_env.ship({"API_KEY": SECRET}, tmp_path / "again")
    assert (other / "env.json").read_text() != (package / "env.json").read_text()


def test_a_resume_takes_a_redacted_value_from_the_environment_or_names_it(monkeypatch):
    from raytune_hpo.run.sweep import init_ray

    hidden = {"API_KEY": secret_env.REDACTED}
    monkeypatch.setenv("API_KEY", "from-env")
    assert secret_env.reveal(hidden) == {"API_KEY": "from-env"}
    monkeypatch.delenv("API_KEY")
    with pytest.raises(UserError) as e:
        init_ray(None, None, hidden)  # refused before Ray starts
    assert e.value.dotted_field == "runtime_env.env_vars.API_KEY"
    assert "set API_KEY in this environment" in str(e.value) and "\n" not in str(e.value)
    assert secret_env.reveal({"A": "1"}) == {"A": "1"} and secret_env.reveal(None) == {}


def test_storage_messages_hide_the_credentials_a_uri_carries():
    uri = (
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/sweeps?endpoint_override=127.0.0.1:9000"
        f"&secret_key={SECRET}x&session_token=tok{SECRET}&scheme=http"
    )
    shown = storage.display(uri)
    assert SECRET not in shown
    assert "endpoint_override=127.0.0.1:9000" in shown and "scheme=http" in shown
    assert "secret_key=***" in shown and "session_token=***" in shown
    assert storage.display("/tmp/x?secret_key=1") == "/tmp/x?secret_key=1"  # a local path
    with pytest.raises(UserError) as e, storage.errors(uri):
        raise OSError(f"AWS Error ACCESS_DENIED for {uri}")
    assert SECRET not in str(e.value) and "credentials" in str(e.value)


def test_download_refuses_a_key_that_climbs_out_of_its_directory(tmp_path):
    root = f"mock://{uuid.uuid4().hex}/exp"
    fs, base = storage.filesystem(root)
    fs.create_dir(f"{base}/trial/..")
    for key in ("result.json", "trial/params.json"):
        with fs.open_output_stream(f"{base}/{key}") as f:
            f.write(b"{}")
    dest = tmp_path / "a" / "b" / "dest"
    assert storage.download(root, dest) == 2  # an honest tree downloads
    fs.create_dir(f"{base}/trial/../..")
    with fs.open_output_stream(f"{base}/trial/../../escaped") as f:
        f.write(b"planted")
    dest2 = tmp_path / "a" / "b" / "dest2"
    with pytest.raises(UserError) as e:
        storage.download(root, dest2)
    assert "'..'" in str(e.value) and "trial/../../escaped" in str(e.value)
    assert not list(tmp_path.rglob("escaped"))  # not outside, not inside
    assert not dest2.exists()  # nothing of the tree was copied


def test_the_token_never_goes_over_plain_http_to_another_host(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", SECRET)
    with pytest.raises(UserError) as e:
        jobs.check_transport("http://10.1.2.3:8265")
    assert "unencrypted over plain http to 10.1.2.3" in str(e.value)
    assert "--allow-plain-http" in str(e.value) and SECRET not in str(e.value)
    for fine in ("https://10.1.2.3:8265", "http://127.0.0.1:8265", "http://localhost:8265"):
        jobs.check_transport(fine)
    jobs.check_transport("http://[::1]:8265")
    jobs.check_transport("http://10.1.2.3:8265", allow_plain_http=True)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    jobs.check_transport("http://10.1.2.3:8265")  # no token anywhere: nothing secret is sent
    monkeypatch.setenv("RAY_AUTH_TOKEN", SECRET)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    jobs.check_transport("http://10.1.2.3:8265")  # the user switched tokens off
