"""The read path is cheap: no pydantic, and results dump to the same JSON documents as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlserve.registry import Registry


def test_reading_the_registry_imports_no_schema_compiler(reg: Registry, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    reg.register("m", tmp_path / "a", stage="production")
    probe = (f"import sys\nfrom mlserve.registry import Registry\nreg = Registry({str(reg.root)!r})\n"
             "reg.resolve('m@production'); reg.version_info('m', '1'); reg.list_versions('m'); reg.list_models()\n"
             "reg.history('m'); reg.model_summary('m')\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'pydantic_core'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_results_dump_as_pydantic_models_did(reg: Registry, tmp_path: Path) -> None:
    from pydantic_core import to_jsonable_python

    for name in "abc":
        (tmp_path / name).write_text(name)
    results = [reg.register("m", tmp_path / "a", metrics={"auc": 0.9}, meta={"nested": {"k": [1, None]}}),
               reg.register("m", tmp_path / "b"), reg.promote("m", "1"), reg.promote("m", "2"),
               reg.tag("m", "1", ["x"]), reg.rollback("m"), reg.resolve("m"), reg.version_info("m", "1"),
               reg.model_summary("m"), reg.list_models(), reg.list_versions("m"), reg.history("m"),
               reg.history("m", at=reg.events("m")[-1].at), reg.verify(), reg.gc("m", keep=0, dry_run=True)]
    for result in results:
        assert result.model_dump(mode="json") == to_jsonable_python(result.model_dump()), type(result).__name__
        json.dumps(result.model_dump(mode="json"), allow_nan=False)
