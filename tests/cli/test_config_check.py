"""`dcctl config check` says OK only when the operations can start: the config, every playbook it
would use, and the hook points its hooks name. Each problem: the file, the key path, what was expected."""
import shutil
from pathlib import Path

import yaml

from tests.cli.test_errors import assert_clean_failure, run
from tests.unit.test_config import GOOD

SHIPPED = Path(__file__).parents[2] / "playbooks"


def config_with(tmp_path, **top) -> Path:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data.update(top)
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def own_playbooks(tmp_path) -> Path:
    directory = tmp_path / "playbooks"
    shutil.copytree(SHIPPED, directory)
    return directory


def test_ok_says_where_the_playbooks_come_from(tmp_path):
    result = run("config", "check", str(config_with(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "OK (1 service(s), 2 sites), playbooks from the dcctl package" in result.stdout
    playbooks = own_playbooks(tmp_path)
    result = run("config", "check", str(config_with(tmp_path, playbooks_dir=str(playbooks))))
    assert result.returncode == 0 and f"playbooks from {playbooks}" in result.stdout, result.stderr


def test_a_playbooks_dir_without_one_of_the_playbooks_is_not_ok(tmp_path):
    playbooks = own_playbooks(tmp_path)
    (playbooks / "drill.yaml").unlink()
    result = run("config", "check", str(config_with(tmp_path, playbooks_dir=str(playbooks))))
    assert_clean_failure(result, 3, f"{playbooks}/drill.yaml: cannot read playbook", "hint:")


def test_a_broken_playbook_names_its_file_and_entry(tmp_path):
    playbooks = own_playbooks(tmp_path)
    text = (playbooks / "rejoin.yaml").read_text().replace("  - rewind", "  - rewnd")
    (playbooks / "rejoin.yaml").write_text(text)
    result = run("config", "check", str(config_with(tmp_path, playbooks_dir=str(playbooks))))
    assert_clean_failure(result, 3, f'{playbooks}/rejoin.yaml: steps[', 'unknown step "rewnd"; did you mean "rewind"?')


def test_a_relative_playbooks_dir_is_not_ok(tmp_path):
    config = config_with(tmp_path, playbooks_dir="playbooks")
    assert_clean_failure(run("config", "check", str(config)), 3,
                         f'{config}: playbooks_dir: expected an absolute path, got "playbooks"')


def test_a_hook_at_a_point_no_playbook_has_is_not_ok(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"]["massar"]["hooks"] = {"before_swich": [{"site": "old_primary", "run": "true"}],
                                           "after_promote": [{"site": "new_primary", "run": "true"}]}
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("config", "check", str(path))
    assert_clean_failure(result, 3, f"{path}: services.massar.hooks.before_swich: expected a hook point of the "
                                    "playbooks (", 'got "before_swich"; did you mean "before_switch"?')
    assert "after_promote" not in result.stderr.split("expected")[0]


def test_a_hook_point_of_a_site_playbook_is_ok(tmp_path):
    playbooks = own_playbooks(tmp_path)
    text = (playbooks / "failover.yaml").read_text().replace("  - promote", "  - hook: before_promote\n  - promote")
    (playbooks / "failover.yaml").write_text(text)
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["playbooks_dir"] = str(playbooks)
    data["services"]["massar"]["hooks"] = {"before_promote": [{"site": "new_primary", "run": "true"}]}
    path = tmp_path / "dcctl.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("config", "check", str(path))
    assert result.returncode == 0, result.stderr
