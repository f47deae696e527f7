"""The README's configuration table is generated from Settings; this keeps the two identical."""

from __future__ import annotations

import re
from pathlib import Path

from paytabs_guard.entrypoints.config_table import config_table
from paytabs_guard.setting_values import env_name
from paytabs_guard.settings import Settings

README = Path(__file__).parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    found = re.search(r"<!-- config-table:start -->\n(.*?)\n<!-- config-table:end -->", text, re.S)
    assert found, "README lost its config-table markers"
    assert found.group(1) == config_table(), (
        "README configuration table is stale: paste the output of `paytabs-guard config table`"
    )


def test_every_variable_is_documented() -> None:
    text = README.read_text()
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in text
