"""Builds the compiled record codec; the package metadata lives in setup.cfg.

``airflow_provider_odps_tunnel.tunnel.codec._record_codec_c`` is optional at run time: when it is
missing, ``record_codec`` falls back to the pure-Python reference. The build needs Cython
(listed in pyproject.toml's build requirements and in the ``dev`` extra) and a C compiler.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "airflow_provider_odps_tunnel.tunnel.codec._record_codec_c",
        ["airflow_provider_odps_tunnel/tunnel/codec/_record_codec_c.pyx"],
        extra_compile_args=["-O3"],
    )
]

# The generated C goes under build/ (git-ignored), not next to the .pyx.
setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}, build_dir="build")
)
