"""Namespace-free access to a PMML document's elements.

PMML files come with a version-specific namespace (``http://www.dmg.org/PMML-4_4``);
the evaluators only care about element names, so this module parses once
and strips namespaces, giving every other module plain ``find("TreeModel")``.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from models.pmml_schema import MODEL_ELEMENTS
from serving.errors import ModelLoadError

__all__ = ["model_element", "parse_document"]


def parse_document(document: bytes) -> ET.Element:
    """The document's root element with every namespace removed from the tags."""
    try:
        events = ET.iterparse(io.BytesIO(document), events=("start",))
        root: ET.Element | None = None
        for _, element in events:
            if root is None:
                root = element
            element.tag = element.tag.rpartition("}")[2]
    except ET.ParseError as exc:
        raise ModelLoadError(f"the PMML is not well-formed XML: {exc}") from exc
    if root is None or root.tag != "PMML":
        raise ModelLoadError("the document is not PMML (no PMML root element)")
    return root


def model_element(root: ET.Element) -> ET.Element:
    """The document's (first) top-level model element."""
    for element in root:
        if element.tag in MODEL_ELEMENTS:
            return element
    raise ModelLoadError("the PMML holds no model element")
