"""Every command's user errors: one line on stderr naming what is wrong, exit code 2, no
traceback (one family of user errors, caught once in ``main``)."""

import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_run(tmp_path, one_line_error):
    one_line_error(["run", str(tmp_path / "nope.yaml")], "sweep file does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("searcher: {name: bayes}\n")
    one_line_error(["run", str(bad)], "unknown searcher 'bayes'")
    one_line_error(["run", "--set", "epochs"], "--set 'epochs': expected KEY=VALUE")


def test_submit_checks_the_sweep_before_the_cluster(tmp_path, one_line_error):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {lr: {type: float, low: 1, high: 0}}\n")
    one_line_error(["submit", str(bad), "--address", nowhere()], "space.lr: empty")
    one_line_error(["submit", "--address", nowhere()], "no Ray dashboard answers")


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
def test_job_commands_on_an_unreachable_cluster(command, one_line_error):
    one_line_error([command, "raysubmit_x", "--address", nowhere()], "no Ray dashboard")


def test_list(one_line_error):
    one_line_error(["list", "--address", nowhere()], "no Ray dashboard answers")


def test_resume(tmp_path, one_line_error):
    one_line_error(["resume", str(tmp_path)], "no sweep.yaml here")


def test_results(tmp_path, one_line_error):
    one_line_error(["results", str(tmp_path)], "no results.csv here")


def test_compare(tmp_path, one_line_error):
    one_line_error(["compare", str(tmp_path / "s.yaml")], "study file does not exist")
    bad = tmp_path / "s.yaml"
    bad.write_text("problem: {function: branin}\nmethods: [{name: a, searcher: {name: nope}}]\n")
    one_line_error(["compare", str(bad)], "methods.0.searcher: unknown searcher")


def test_report(tmp_path, one_line_error):
    one_line_error(["report", str(tmp_path)], "run compare first")
    # A study written before compare recorded its problems, whose sweep file has moved since:
    # the report needs the file and says so in one line.
    (tmp_path / "study.yaml").write_text(
        "name: s\nproblems: [{sweep: /gone/sweep.yaml}]\n"
        "methods: [{name: r, searcher: {name: random}}]\n"
    )
    (tmp_path / "trials.csv").write_text("problem,method,rep,trial,value,budget\ns,r,0,0,0.5,1\n")
    one_line_error(["report", str(tmp_path)], "/gone/sweep.yaml: sweep file does not")


def test_the_entry_point_stays_callable_after_its_commands_module_is_imported(capsys):
    """``raytune_hpo.cli:main`` (the console script's) called twice in one process: the first
    call imports the commands' module, which must not take the function's name."""
    import raytune_hpo.cli as cli

    assert cli.main(["searchers"]) == 0
    assert callable(cli.main) and cli.main(["searchers"]) == 0
    assert "sobol" in capsys.readouterr().out
