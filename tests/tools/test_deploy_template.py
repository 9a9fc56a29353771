"""The templates render as ecspresso renders them.

ecspresso renders with kayac/go-config, whose functions are (config.go,
DefaultFuncMap):

    "env": func(keys ...string) string {
        v := ""
        for _, k := range keys { v = os.Getenv(k); if v != "" { return v }; v = k }
        return v
    },
    "must_env": LookupEnv(key) or panic "environment variable %s is not defined",
    "json_escape": json.Marshal(s) without the surrounding quotes,

and Go's json.Marshal escapes <, > and & as \\u003c, \\u003e, \\u0026. The
expected outputs below follow those lines.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sbcntrctl.deploy import ecs, template
from tests.tools.deploy_support import ENV, TASKDEFS, run_cli


def render(text: str, env: dict[str, str]) -> str:
    return template.render_text(text, env, Path("t.json"))


# (template, environment, what go-config renders)
GO_CONFIG_CASES = [
    ("{{ env `A` `d` }}", {"A": "x"}, "x"),
    ("{{ env `A` `d` }}", {}, "d"),
    ("{{ env `A` `d` }}", {"A": ""}, "d"),  # set but empty: the default
    ("{{ env `A` }}", {}, "A"),  # no default: the last key itself
    ("{{ env `A` `B` `d` }}", {"B": "b"}, "b"),  # each key is looked up in turn
    ("{{ env `A` `d` }}", {"d": "surprise"}, "surprise"),  # the default too
    ("{{ must_env `A` }}", {"A": ""}, ""),  # set but empty: empty
    ("{{must_env `A`}}", {"A": "x"}, "x"),
    ('{{ env "A" "d" }}', {}, "d"),  # Go double-quoted strings
    ("{{ must_env `A` | json_escape }}", {"A": 'a"b\\c'}, 'a\\"b\\\\c'),
    ("{{ env `A` `d` | json_escape }}", {"A": "<&>"}, "\\u003c\\u0026\\u003e"),
    ("{{ env `A` `d` | json_escape }}", {"A": "tab\tnl\n"}, "tab\\tnl\\n"),
]


@pytest.mark.parametrize(("text", "env", "expected"), GO_CONFIG_CASES)
def test_functions_follow_go_config(text: str, env: dict[str, str], expected: str) -> None:
    assert render(text, env) == expected


def test_set_but_empty_variable_takes_the_default_like_ecspresso() -> None:
    td = ecs.render("backend", {**ENV, "ENV_NAME": ""}, TASKDEFS).task_definition
    router = next(c for c in td["containerDefinitions"] if c["name"] == "log-router")
    assert router["logConfiguration"]["options"]["awslogs-group"] == "/sbcntr/dev/log-router"


def test_a_backslash_value_renders_through_json_escape() -> None:
    levels = r"^\w+$"
    td = ecs.render("frontend", {**ENV, "CLOUDWATCH_LEVELS": levels}, TASKDEFS).task_definition
    router = next(c for c in td["containerDefinitions"] if c["name"] == "log-router")
    assert {"name": "CLOUDWATCH_LEVELS", "value": levels} in router["environment"]


def test_an_unescaped_value_that_needs_escaping_is_refused_naming_it(tmp_path: Path) -> None:
    """ecspresso would render broken JSON (\\w) or a different value (\\n)."""
    path = tmp_path / "t.json"
    path.write_text('{"v": "{{ must_env `PATTERN` }}"}')
    for value in (r"^\w+$", r"a\nb", 'say "hi"'):
        with pytest.raises(template.TemplateError, match=r"value of PATTERN .* json_escape"):
            template.render_json(path, {"PATTERN": value})
    assert template.render_json(path, {"PATTERN": "plain"}) == {"v": "plain"}


def test_invalid_json_names_the_variable_at_fault() -> None:
    with pytest.raises(template.TemplateError, match=r"invalid at line .* value of MIN_TASKS"):
        ecs.render("backend", {**ENV, "MIN_TASKS": "two"}, TASKDEFS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ ssm `/sbcntr/db/url` }}", "ssm needs ecspresso's ssm plugin"),
        ("{{ secretsmanager_arn `db` }}", "needs ecspresso's secretsmanager plugin"),
        ("{{ tfstate `aws_lb.x.arn` }}", "needs ecspresso's tfstate plugin"),
        ("{{ cfn_output `stack` `Key` }}", "needs ecspresso's cloudformation plugin"),
        ('{{ printf "%s" `x` }}', "unsupported expression"),
        ("{{ .Cluster }}", "unsupported expression"),
        ("{{ env `A` | upper }}", "only `| json_escape` may follow env"),
        ("{{ must_env `A` `B` }}", "must_env takes one name"),
    ],
)
def test_other_functions_are_refused_naming_them(text: str, message: str) -> None:
    with pytest.raises(template.TemplateError, match=re.escape(message)) as refused:
        render(f'{{"v": "{text}"}}', {"A": "a"})
    assert "t.json:1:" in str(refused.value)


def test_cli_reports_a_template_problem_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, broken)
    td = broken / "backend" / "task-def.json"
    td.write_text(
        td.read_text()
        .replace("`CLOUDWATCH_LEVELS` `^(warning|error|critical)$` |", "`CLOUDWATCH_LEVELS` `x` |")
        .replace(" | json_escape", "")
    )
    env = {**ENV, "CLOUDWATCH_LEVELS": r"^\w+$"}
    refused = run_cli("render", "backend", "--dir", str(broken), env=env)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "value of CLOUDWATCH_LEVELS" in refused.stderr
    done = run_cli("render", "backend", env=env)
    assert done.returncode == 0, done.stderr
    router = json.loads(done.stdout)["containerDefinitions"][1]
    assert {"name": "CLOUDWATCH_LEVELS", "value": r"^\w+$"} in router["environment"]


def test_a_missing_template_folder_is_one_line(tmp_path: Path) -> None:
    missing = run_cli("render", "backend", "--dir", str(tmp_path / "nowhere"), env=ENV)
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "cannot read the template (No such file or directory): check --dir" in missing.stderr


def test_if_keeps_or_drops_its_block_and_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    source = tmp_path / "t.json"
    text = "[1{{ if env `X` `` }},\n2{{ end }}]"
    assert template.render_text(text, {"X": "y"}, source) == "[1,\n2]"
    assert template.render_text(text, {}, source) == "[1\n]"
    assert template.render_text(text, {"X": ""}, source) == "[1\n]"
    for broken in (
        "{{ if must_env `X` }}a{{ end }}",
        "{{ if env `X` `` }}{{ if env `Y` `` }}a{{ end }}{{ end }}",
        "{{ if env `X` `` }}a{{ else }}b{{ end }}",
        "a{{ end }}",
    ):
        with pytest.raises(template.TemplateError, match=r"t\.json:1"):
            template.render_text(broken, {"X": "1", "Y": "1"}, source)


def test_if_eq_keeps_its_block_for_the_values_it_names(tmp_path: Path) -> None:
    """Go's ``eq arg1 arg2...`` is true when arg1 equals any other argument
    (text/template, "Functions"); ecspresso renders it so."""
    source = tmp_path / "t.json"
    text = '[1{{ if eq (env `S` `ROLLING`) `BLUE_GREEN` "CANARY" }},\n2{{ end }}]'
    assert template.render_text(text, {"S": "BLUE_GREEN"}, source) == "[1,\n2]"
    assert template.render_text(text, {"S": "CANARY"}, source) == "[1,\n2]"
    assert template.render_text(text, {"S": "ROLLING"}, source) == "[1\n]"
    assert template.render_text(text, {}, source) == "[1\n]"  # the default: ROLLING
    assert template.render_text(text, {"S": "BLUE"}, source) == "[1\n]"
    # Inside a dropped block a must_env is never evaluated: unset is no error.
    guarded = "{{ if eq (env `S` `ROLLING`) `CANARY` }}{{ must_env `ONLY_FOR_CANARY` }}{{ end }}"
    assert template.render_text(guarded, {}, source) == ""
    with pytest.raises(template.MissingVariables, match="ONLY_FOR_CANARY"):
        template.render_text(guarded, {"S": "CANARY"}, source)
    for broken in (
        "{{ if eq (must_env `S`) `A` }}a{{ end }}",
        "{{ if eq (env `S` `x`) A }}a{{ end }}",
        "{{ if ne (env `S` `x`) `A` }}a{{ end }}",
    ):
        with pytest.raises(template.TemplateError, match=r"t\.json:1"):
            template.render_text(broken, {"S": "A"}, source)
