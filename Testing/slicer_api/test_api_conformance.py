"""Everything our Slicer-side code uses exists in Slicer 5.10 and 5.12 (and the CTK they pin).

Why: the modules run only inside Slicer, which CI does not have, and the headless tests replace
Slicer with stand-ins. A name that one supported release lacks (``slicer.util.executePythonModule``
before 5.12, a misspelt Qt signal, a keyword added in a later release) passed them all. Here every
use the collector (usage.py) finds is looked up in the reference lists extracted from the real
sources (reference_api.py says where each list comes from).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from Testing.slicer_api import extract_reference
from Testing.slicer_api.conformance import problems
from Testing.slicer_api.reference_api import (
    GUARD_TAG,
    REFERENCE_DIR,
    SUPPORTED_TAGS,
    slicer_api,
    supported,
)
from Testing.slicer_api.usage import ROOT, all_uses, python_uses

EXAMPLE = ROOT / "AutoSegCore" / "AutoSegCoreLib" / "example_module.py"


def uses_of(source: str) -> list:
    return python_uses(EXAMPLE, textwrap.dedent(source))


def test_everything_our_slicer_side_code_uses_exists_in_every_supported_slicer() -> None:
    found = problems(all_uses(), supported())
    assert not found, "\n".join(found)


def test_the_collector_sees_every_kind_of_use() -> None:
    """A collector that found nothing would make the test above pass vacuously."""
    kinds = Counter(use.kind for use in all_uses())
    minimum = {"namespace": 30, "module": 20, "member": 150, "signal": 10, "class": 20}
    minimum |= {"keyword": 3, "base_member": 10, "vtk": 3}
    short = {kind: kinds[kind] for kind, least in minimum.items() if kinds[kind] < least}
    assert not short, f"fewer uses than expected: {short}"


def test_a_function_that_only_5_12_has_fails_on_5_10() -> None:
    found = problems(
        uses_of(
            """
            import slicer
            slicer.util.executePythonModule("light_the_torch", ["install", "torch"])
            """
        ),
        supported(),
    )
    assert found == [
        "AutoSegCore/AutoSegCoreLib/example_module.py:3: slicer.util has no "
        "'executePythonModule' in Slicer v5.10.0"
    ]


def test_a_keyword_that_only_5_12_has_fails_on_5_10() -> None:
    found = problems(
        uses_of(
            """
            import slicer
            slicer.util.launchConsoleProcess(["ls"], blocking=False)
            """
        ),
        supported(),
    )
    assert len(found) == 1
    assert "launchConsoleProcess() takes no keyword 'blocking'" in found[0]
    assert found[0].endswith("in Slicer v5.10.0")


def test_sample_data_registration_is_checked_against_the_sample_data_module() -> None:
    found = problems(
        uses_of(
            """
            import SampleData
            SampleData.SampleDataLogic.registerCustomSampleDataSource(
                category="AutoSeg", sampleName="x", uris=[], customDownloader=print
            )
            SampleData.SampleDataLogic.registerCustomSampleDataSource(sampleNames="x")
            SampleData.SampleDataLogic.registerSampleDataSource()
            SampleData.SampleDataLogc.registerCustomSampleDataSource()
            """
        ),
        supported(),
    )
    text = "\n".join(found)
    assert "registerCustomSampleDataSource() takes no keyword 'sampleNames'" in text
    assert "SampleData.SampleDataLogic has no member 'registerSampleDataSource'" in text
    assert "SampleData has no 'SampleDataLogc'" in text
    assert "SampleData.SampleDataLogc does not exist" in text
    assert not any("example_module.py:3:" in line for line in found)  # the right call passes
    assert len(found) == 4 * len(SUPPORTED_TAGS)


def test_misspelt_members_signals_and_class_names_fail() -> None:
    found = problems(
        uses_of(
            """
            import qt
            import slicer
            timer = qt.QTimer()
            timer.connect("timout()", print)
            timer.setIntervall(100)
            slicer.mrmlScene.GetFirstNodeByClas("vtkMRMLScalarVolumeNode")
            slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumNode")
            slicer.vtkMRMLSegmentatonNode()
            """
        ),
        supported(),
    )
    text = "\n".join(found)
    assert "QTimer has no signal timout()" in text
    assert "QTimer has no member 'setIntervall'" in text
    assert "vtkMRMLScene has no member 'GetFirstNodeByClas'" in text
    assert "class vtkMRMLScalarVolumNode does not exist" in text
    assert "no slicer.vtkMRMLSegmentatonNode" in text
    assert len(found) == 5 * len(SUPPORTED_TAGS)


def test_a_guarded_fallback_may_use_what_only_newer_releases_have_but_not_a_typo() -> None:
    source = """
        import slicer
        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        packaging.pip_ensure(["scipy"])
        packaging.pip_ensur(["scipy"])
        """
    found = problems(uses_of(source), supported())
    assert len(found) == 2  # the typo (line 8) fails in both releases; pip_ensure is in 5.12
    assert all("example_module.py:8:" in line for line in found)
    assert "slicer.packaging has no 'pip_ensur' in Slicer v5.12.0" in found[1]


def test_untyped_objects_are_not_guessed() -> None:
    """Only stated types are checked: an untyped name that is sometimes a node is left alone."""
    source = """
        import slicer
        def first(node: slicer.vtkMRMLScalarVolumeNode):
            return node.GetName()
        def second(node):
            return node.GetDirection()
        """
    assert problems(uses_of(source), supported()) == []


@pytest.mark.parametrize("tag", [*SUPPORTED_TAGS, GUARD_TAG])
def test_each_reference_names_its_source_and_pinned_ctk(tag: str) -> None:
    api = slicer_api(tag)
    source = api.data["source"]
    assert source == {"repository": "Slicer/Slicer", "tag": tag, "commit": source["commit"]}
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert api.ctk["source"]["commit"] == api.data["ctk_commit"]
    assert api.python_version == ((3, 9) if tag == GUARD_TAG else (3, 12))
    assert len(api.data["classes"]) > 500
    assert len(api.ctk["classes"]) > 100


def test_the_other_references_name_their_sources() -> None:
    qt = json.loads((REFERENCE_DIR / "qt-5.15.json").read_text())["source"]
    assert qt["qt_version"].startswith("5.15.")
    vtk = json.loads((REFERENCE_DIR / "vtk-common.json").read_text())["source"]
    assert vtk["vtk_version"].startswith("9.")
    torch = json.loads((REFERENCE_DIR / "pytorchutils.json").read_text())["source"]
    assert torch["repository"] == "fepegar/SlicerPyTorch"


def test_the_header_reader_finds_methods_macros_enums_properties_and_signals() -> None:
    header = """
        class VTK_MRML_EXPORT vtkMRMLThing : public vtkMRMLNode
        {
        public:
          static vtkMRMLThing* New();
          vtkTypeMacro(vtkMRMLThing, vtkMRMLNode);
          /// A comment with Fake(1) in it
          virtual int GetValue() const { return this->Value; }
          vtkGetMacro(Size, int);
          vtkBooleanMacro(Visible, bool);
          enum Events { ThingEvent = 1000, OtherEvent };
        protected:
          void Hidden();
        };
        class QMRML_WIDGETS_EXPORT qMRMLThing : public QWidget
        {
          Q_OBJECT
          Q_PROPERTY(QStringList nodeTypes READ nodeTypes WRITE setNodeTypes)
        public:
          Q_INVOKABLE vtkMRMLNode* currentNode() const;
          void notReachable();
        public slots:
          void setCurrentNode(vtkMRMLNode* node);
        signals:
          void currentNodeChanged(vtkMRMLNode* node);
          void pathChanged(const QString& path, int count = 0);
        };
        """
    classes = extract_reference.cxx_class_api(textwrap.dedent(header))
    thing = classes["vtkMRMLThing"]
    assert thing["base"] == "vtkMRMLNode"
    assert {"New", "GetValue", "GetSize", "VisibleOn", "VisibleOff", "ThingEvent"} <= set(
        thing["members"]
    )
    assert {"IsA", "SafeDownCast"} <= set(thing["members"])
    assert "Hidden" not in thing["members"]
    assert "Fake" not in thing["members"]
    widget = classes["qMRMLThing"]
    assert set(widget["members"]) == {
        "nodeTypes",
        "currentNode",
        "setCurrentNode",
        "currentNodeChanged",
        "pathChanged",
    }
    assert widget["signals"] == ["currentNodeChanged(vtkMRMLNode*)", "pathChanged(QString,int)"]


def _mirror(name: str) -> Path:
    return Path("/work/.mirror") / name / "repo"


@pytest.mark.skipif(
    not _mirror("Slicer+Slicer").is_dir(), reason="no local mirror of Slicer/Slicer to re-read"
)
def test_the_committed_slicer_reference_is_what_the_extractor_reads(tmp_path: Path) -> None:
    """Where the sources are at hand, the data equals a fresh extraction (nothing hand-edited)."""
    tag = SUPPORTED_TAGS[0]
    fresh = extract_reference.slicer_reference(_mirror("Slicer+Slicer"), tag)
    committed = slicer_api(tag).data
    assert json.loads(json.dumps(fresh)) == committed


def test_what_runs_before_the_version_check_exists_in_slicer_5_8() -> None:
    """An old Slicer must get as far as the module's "needs Slicer 5.10" message."""
    files = [ROOT / m / f"{m}.py" for m in ("AutoSegTrain", "AutoSegPredict")]
    files.append(ROOT / "AutoSegCore" / "AutoSegCoreLib" / "extension_info.py")
    uses = [use for path in files for use in python_uses(path)]
    assert len(uses) > 10
    found = problems(uses, [slicer_api(GUARD_TAG)])
    assert not found, "\n".join(found)
