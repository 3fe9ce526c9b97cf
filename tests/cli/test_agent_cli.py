"""`dcctl agent`: its expected failures are one line with a documented exit code; hash-password."""
import bcrypt
import yaml

from tests.cli.test_errors import assert_clean_failure, run
from tests.unit.test_config import GOOD


def test_an_unknown_site_is_a_usage_error(tmp_path):
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    assert_clean_failure(run("-c", str(config), "agent", "run", "--site", "casa"), 2,
                         "no site named 'casa' in any service; known sites: backup, rabat")


def test_site_is_required():
    result = run("agent", "run")
    assert result.returncode == 2 and "--site" in result.stderr


def test_an_unreadable_certificate_exits_3_before_listening(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"]["massar"]["sites"]["rabat"]["agent"] = {
        "listen": "127.0.0.1:1", "tls_cert_file": str(tmp_path / "missing.crt"),
        "tls_key_file": str(tmp_path / "missing.key")}
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(data))
    assert_clean_failure(run("-c", str(config), "agent", "run", "--site", "rabat"), 3,
                         "services.massar.sites.rabat.agent.tls_cert_file: cannot load the certificate")


def test_hash_password_reads_stdin_and_prints_a_bcrypt_hash():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "dcctl", "agent", "hash-password", "--rounds", "4"],
                            input="s3cret\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$2b$04$") and bcrypt.checkpw(b"s3cret", hashed.encode())
    empty = subprocess.run([sys.executable, "-m", "dcctl", "agent", "hash-password"], input="\n",
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "the password is empty" in empty.stderr
