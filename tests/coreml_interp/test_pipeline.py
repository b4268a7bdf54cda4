"""pipeline.py: pipelines of ML programs, of a neural network and Core ML's non-maximum suppression model."""

import coremltools as ct
import numpy as np
import pytest
from _mil import assert_close, mb
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.proto import FeatureTypes_pb2, Model_pb2

from workbench.coreml_interp import CoreMLInterpreter
from workbench.errors import WorkbenchError


def test_a_pipeline_of_two_ml_programs_runs_them_in_order(tmp_path):
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    first = ct.convert(mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)(
        lambda x: mb.relu(x=x, name="r")), convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT32)
    assert first.get_spec().description.output[0].name == "r"  # the second program's input, by name
    second = ct.convert(mb.program(input_specs=[mb.TensorSpec(shape=x.shape)],
                                   opset_version=ct.target.iOS16)(lambda r: mb.add(x=r, y=10.0)),
                        convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                        compute_precision=ct.precision.FLOAT32)
    path = tmp_path / "pipe.mlpackage"
    ct.utils.make_pipeline(first, second).save(str(path))
    interp = CoreMLInterpreter(path)
    assert interp.kind == "pipeline"
    out = next(iter(interp.predict({interp.input_names[0]: x}).values()))
    assert_close(out, np.maximum(x, 0) + 10.0, 0, 0)


def _array(feature, shape):
    feature.type.multiArrayType.shape.extend(shape)
    feature.type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Value("FLOAT32")


def _nms_model(per_class=False, iou=0.5, confidence=0.2):
    spec = Model_pb2.Model()
    spec.specificationVersion = 3
    for name, shape in (("scores", (4, 2)), ("boxes", (4, 4))):
        f = spec.description.input.add()
        f.name = name
        _array(f, shape)
    for name, shape in (("confidence", (4, 2)), ("coordinates", (4, 4))):
        f = spec.description.output.add()
        f.name = name
        _array(f, shape)
    p = spec.nonMaximumSuppression
    p.iouThreshold, p.confidenceThreshold, p.pickTop.perClass = iou, confidence, per_class
    p.confidenceInputFeatureName, p.coordinatesInputFeatureName = "scores", "boxes"
    p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName = "confidence", "coordinates"
    p.stringClassLabels.vector.extend(["a", "b"])
    return spec


@pytest.mark.parametrize("per_class, kept", [(False, [0, 2]), (True, [0, 1, 2])])
def test_detector_pipeline_ends_in_non_maximum_suppression(per_class, kept, tmp_path):
    from coremltools.models.pipeline import Pipeline

    raw_scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.15]], np.float32)
    raw_boxes = np.array([[0.5, 0.5, 1, 1], [0.52, 0.5, 1, 1], [3, 3, 1, 1], [6, 6, 1, 1]], np.float32)
    nn = NeuralNetworkBuilder([("s", datatypes.Array(4, 2)), ("b", datatypes.Array(4, 4))],
                              [("scores", datatypes.Array(4, 2)), ("boxes", datatypes.Array(4, 4))],
                              disable_rank5_shape_mapping=True)
    nn.add_activation("copy_s", "LINEAR", "s", "scores", params=[1.0, 0.0])
    nn.add_activation("scale_b", "LINEAR", "b", "boxes", params=[2.0, 0.0])  # boxes in pixels: twice the units
    pipeline = Pipeline([("s", datatypes.Array(4, 2)), ("b", datatypes.Array(4, 4))], ["confidence", "coordinates"])
    pipeline.add_model(nn.spec)
    pipeline.add_model(_nms_model(per_class))
    path = tmp_path / "detector.mlmodel"
    ct.utils.save_spec(pipeline.spec, str(path))
    out = CoreMLInterpreter(path).predict({"s": raw_scores, "b": raw_boxes})
    # box 1 overlaps box 0 (IoU 0.96) but its top class differs; box 3's best score is below 0.2
    assert_close(out["confidence"], raw_scores[kept], 0, 0)
    assert_close(out["coordinates"], 2 * raw_boxes[kept], 0, 0)


def test_an_ml_program_pipeline_needs_its_package(tmp_path):
    x = np.ones((1, 3), np.float32)
    a = ct.convert(mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)(
        lambda x: mb.relu(x=x)), convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    spec = Model_pb2.Model()
    spec.specificationVersion = a.get_spec().specificationVersion
    spec.pipeline.models.add().CopyFrom(a.get_spec())
    spec.description.CopyFrom(a.get_spec().description)
    path = tmp_path / "bare.mlmodel"
    ct.utils.save_spec(spec, str(path))
    with pytest.raises(WorkbenchError, match=r"is an ML program whose weights are in an \.mlpackage"):
        CoreMLInterpreter(path)
