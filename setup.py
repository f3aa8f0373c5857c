"""Build hook only (the project metadata is in pyproject.toml).

The hardware presets and the example sweep spaces live in ``hw_configs/`` at the top of the
repository (where the docs, reports and tests name them); a wheel must carry them inside the
package, so ``build_py`` copies ``hw_configs/**/*.yaml`` to ``qesim/hw/presets/``, where
:func:`qesim.hw.loader.config_dir` finds them in an installed (non-editable) qesim.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithPresets(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent / "hw_configs"
        dst = Path(self.build_lib) / "qesim" / "hw" / "presets"
        files = sorted(root.rglob("*.yaml"))
        if not files:
            raise SystemExit(f"no hardware presets under {root}: the wheel would ship none")
        for src in files:
            target = dst / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


setup(cmdclass={"build_py": BuildPyWithPresets})
