"""Server-side apply and `metadata.managedFields`, as kube-apiserver does them for custom
resources (k8s.io/apimachinery pkg/util/managedfields and sigs.k8s.io/structured-merge-diff).

- `fieldpath`: paths, field sets and their `fieldsV1` encoding;
- `typed`: values typed by a version's compiled schema: compare, merge, field sets, removal;
- `managedfields`: managedFields entries by manager identity, the Update-manager cap and the
  409 of an apply conflict;
- `lastapplied`: kubectl's client-side apply annotation;
- `manager`: the `FieldManager` of one served version (Apply and Update).
"""

from kext.registry.fieldmanager.fieldpath import fields_to_set, path_string, set_to_fields
from kext.registry.fieldmanager.lastapplied import LAST_APPLIED_ANNOTATION
from kext.registry.fieldmanager.manager import FieldManager

__all__ = [
    "LAST_APPLIED_ANNOTATION",
    "FieldManager",
    "fields_to_set",
    "path_string",
    "set_to_fields",
]
