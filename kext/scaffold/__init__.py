"""Scaffolding, as apiserver-boot does it without Go: `kext init DIR --domain D` writes a new
project that runs and tests as written; `kext create resource` adds a resource to one."""

from kext.scaffold.files import ScaffoldError
from kext.scaffold.project import init_project, run_init
from kext.scaffold.resource import (
    NewResource,
    create_resource,
    guess_plural,
    register_resource,
    run_create_resource,
)

__all__ = [
    "NewResource",
    "ScaffoldError",
    "create_resource",
    "guess_plural",
    "init_project",
    "register_resource",
    "run_create_resource",
    "run_init",
]
