"""Makes this interpreter look like the GPU image for scripts/gpu_check.sh (see tests/test_shapes.py):
packages that image lacks cannot be imported; pydantic & co. only from a --target dir of carried
wheels (a path outside site-packages), never from this venv, unless GPU_IMAGE_CARRIED_FROM_VENV=1
(a test that has no wheels for this Python). Active only via PYTHONPATH.

By hand, the whole script as on the GPU machine (wheels for THIS python in /tmp/whl, see
scripts/fetch_gpu_wheels.sh 3.11):
  PYTHON=.venv/bin/python PYTHONPATH=$PWD/tests/gpu_image PERK_WHEELS=/tmp/whl scripts/gpu_check.sh --dry
"""
import importlib.machinery
import os
import sys

ABSENT = {"mlflow", "prefect", "dvc", "higher", "datasets", "fastapi", "psutil", "flows"}
CARRIED = {"pydantic", "pydantic_core", "annotated_types", "typing_inspection", "yaml", "_yaml"}


class _GpuImage:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in CARRIED and "." not in fullname and os.environ.get("GPU_IMAGE_CARRIED_FROM_VENV") != "1":
            outside = [p for p in sys.path if "site-packages" not in p]
            spec = importlib.machinery.PathFinder.find_spec(fullname, outside)
            if spec is None:
                raise ModuleNotFoundError(f"{top} is not on the GPU image (carry it as a wheel)", name=fullname)
            return spec
        return None


# None in sys.modules: `import x` fails and importlib.util.find_spec("x") is None, as for a package
# that is not installed (libraries probe optional packages with find_spec).
for _name in ABSENT:
    sys.modules.setdefault(_name, None)
sys.meta_path.insert(0, _GpuImage())
