import subprocess
import sys

from tertiary.cli.main import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "tertiary" in capsys.readouterr().out


def test_no_command_is_a_usage_error():
    assert main([]) == 2


def test_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "tertiary.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "tertiary" in out.stdout
