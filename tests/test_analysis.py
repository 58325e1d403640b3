"""A trained model's analysis: computed once per version, fresh after the run is trained further, bounded."""

from dcnn_core.design import spec
from dcnn_core.results.analysis import Analyses
from dcnn_core.training import job as training
from dcnn_core.training.registry import JobRegistry


def test_an_analysis_is_computed_once_and_replaced_when_the_run_is_continued(tiny_shapes):
    job = training.TrainingJob(spec.preset("Article baseline"), tiny_shapes, training.TrainConfig(epochs=1, batch_size=16, seed=2))
    job.run()
    analyses = Analyses()
    first = analyses.of(job).evaluation()
    calls = []
    assert analyses.of(job).get("pca", lambda: calls.append(1) or "projection") == "projection"
    assert analyses.of(job).get("pca", lambda: calls.append(1) or "again") == "projection" and calls == [1]
    assert analyses.of(job).evaluation() is first

    job.prepare_continue(2)
    JobRegistry(max_concurrent=1).submit(job)
    assert job.wait(60)
    fresh = analyses.of(job)
    assert not fresh.has("pca") and not fresh.has("evaluation")  # nothing of the old version is shown
    assert fresh.evaluation().accuracy == job.snapshot().test_accuracy


def test_the_cache_keeps_only_the_most_recently_used(tiny_shapes):
    class Imported:  # an imported .keras model: a model, its data, no training
        def __init__(self, job_id):
            self.job_id, self.model, self.dataset = job_id, None, tiny_shapes

    analyses = Analyses(capacity=2)
    runs = [Imported(f"imported-{n}") for n in range(3)]
    kept = [analyses.of(run) for run in runs]
    assert analyses.of(runs[2]) is kept[2] and analyses.of(runs[1]) is kept[1]
    assert analyses.of(runs[0]) is not kept[0]  # it had been dropped
