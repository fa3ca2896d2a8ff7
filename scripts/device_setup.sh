# Sourced by the device scripts: the wheels carried in .whl (kornia, kornia_rs, lmdb, py-ctcmetrics: the device's
# Python lacks them) go to /tmp/site, ahead of this checkout on PYTHONPATH; PY is the Python to run.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >/dev/null 2>&1 || true
    export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PY:-python3}
