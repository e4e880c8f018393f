"""
Packaging for tsyncp_tx.

The twistd plugin lives in the top-level C{twisted/plugins/} directory, which
has no C{__init__.py} (neither has C{twisted/}): it is installed into
Twisted's own C{twisted.plugins} package, where C{twistd} finds it.
"""

from setuptools import setup

setup(
    name="tsyncp_tx",
    version="0.1.0",
    description=(
        "Message-passing primitives over TCP for Twisted (mpsc, broadcast, spsc, "
        "barrier, channel), wire-compatible with the Rust crate tsyncp"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=["tsyncp_tx", "twisted.plugins"],
    package_data={"tsyncp_tx": ["py.typed"]},
    include_package_data=False,
    install_requires=[
        "twisted>=23.8",
        "zope.interface>=5",
        "cbor2>=5.4",
        "protobuf>=4.21",
    ],
    extras_require={
        "tls": ["twisted[tls]>=23.8"],
        "test": [
            "twisted[tls]>=23.8",
            "hypothesis>=6",
            # The JSON codec's orjson path is tested against the stdlib one.
            "orjson>=3.9",
            "mypy>=1.5",
            "mypy-zope>=1.0",
            "pydoctor>=23.9",
            "psutil>=5.9",
            "build>=1.0",
        ],
        "bench": ["pyzmq>=25", "orjson>=3.9", "matplotlib>=3.7", "psutil>=5.9"],
    },
    entry_points={"console_scripts": ["tsyncp = tsyncp_tx._cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Typing :: Typed",
    ],
)
