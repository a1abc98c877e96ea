"""Real qoro-divi programs on asyncjob: `DiviBackend` is the one changed line.

Each program runs end to end against a local scheduler simulating with
qiskit-aer; energies and costs at fixed parameters are compared with divi's
in-process `QiskitSimulator`: equal within 1e-9 in expectation-value mode,
within 4 standard errors when sampling.
"""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import numpy as np
import pytest
from divi.backends import QiskitSimulator
from divi.pipeline import CircuitPipeline, PipelineEnv
from divi.pipeline.stages import MeasurementStage, QiskitSpecStage
from divi.qprog import (
    QAOA,
    VQE,
    BatchConfig,
    BatchMode,
    HartreeFockAnsatz,
    ScipyMethod,
    ScipyOptimizer,
)
from divi.qprog.problems import GraphPartitioningConfig, HamiltonianProblem, MaxCutProblem
from divi.qprog.workflows import PartitioningProgramEnsemble
from qiskit import QuantumCircuit

from asyncjob.local import ThreadedScheduler

from .conftest import H2, divi_backend

PARAMS = np.array([[0.1, -0.2, 0.3], [0.4, 0.05, -0.6]])
"""Two fixed parameter sets of the H2 VQE (HartreeFockAnsatz: 3 parameters)."""


def h2_vqe(backend: Any, **options: Any) -> Any:
    return VQE(
        HamiltonianProblem(H2, n_electrons=2),
        ansatz=HartreeFockAnsatz(),
        backend=backend,
        optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
        max_iterations=1,
        seed=1,
        **options,
    )


def energies(program: Any, backend: Any = None) -> tuple[list[float], list[float]]:
    """The cost at each of `PARAMS`, and its shot-noise variance (nan when exact)."""
    values, variances = program.evaluate(
        PARAMS, program.cost_preprocessor(), backend=backend, return_variance=True
    )
    return (
        [float(np.ravel(values[i])[0]) for i in range(len(PARAMS))],
        [float(variances[i]) for i in range(len(PARAMS))],
    )


def assert_within_shot_noise(ours: Any, reference: Any) -> None:
    (a, va), (b, vb) = ours, reference
    for x, y, var_x, var_y in zip(a, b, va, vb, strict=True):
        assert math.isfinite(var_x) and var_x > 0
        assert abs(x - y) <= 4 * math.sqrt(var_x + var_y), (x, y, var_x, var_y)


def test_vqe_in_expectation_value_mode(aer_scheduler: ThreadedScheduler) -> None:
    with divi_backend(aer_scheduler, supports_expval=True) as backend:
        vqe = h2_vqe(backend)
        vqe.run()
        assert vqe.total_backend_jobs > 0 and vqe.total_run_time > 0
        assert all(job.job_type == "EXPECTATION" for job in aer_scheduler.jobs()[:-1])
        ours, _ = energies(vqe)
    reference, _ = energies(vqe, QiskitSimulator())
    assert ours == pytest.approx(reference, abs=1e-9, rel=0)
    assert all(-1.2 < e < -0.5 for e in ours)


@pytest.mark.parametrize("parametric", [True, False, "auto"])
def test_vqe_in_sampling_mode(aer_scheduler: ThreadedScheduler, parametric: Any) -> None:
    with divi_backend(aer_scheduler, supports_expval=False, parametric=parametric) as backend:
        vqe = h2_vqe(backend)
        vqe.run()
        assert vqe.total_run_time > 0
        assert all(job.job_type == "EXECUTE" for job in aer_scheduler.jobs())
        ours = energies(vqe)
    assert_within_shot_noise(ours, energies(vqe, QiskitSimulator(shots=4000, force_sampling=True)))


def test_per_group_shot_allocation(aer_scheduler: ThreadedScheduler) -> None:
    options = {"grouping_strategy": "qwc", "shot_distribution": "weighted"}
    with divi_backend(aer_scheduler, supports_expval=False) as backend:
        vqe = h2_vqe(backend, **options)
        ours = energies(vqe)
        job = aer_scheduler.jobs()[-1]
    # Weighted: the groups got different shares of the shots.
    totals = {_shots(r) for r in aer_scheduler.scheduler.job_results(job.id) or []}
    assert len(totals) > 1
    reference = QiskitSimulator(shots=4000, force_sampling=True)
    assert_within_shot_noise(ours, energies(h2_vqe(reference, **options)))


def _shots(result: dict[str, Any]) -> int:
    from asyncjob._histogram import decode_result

    return sum(decode_result(result["results"]).values())


def test_qaoa_maxcut_on_a_cycle(aer_scheduler: ThreadedScheduler) -> None:
    problem = MaxCutProblem(nx.cycle_graph(6))
    params = np.array([[0.3, 0.7], [-0.5, 1.1]])
    with divi_backend(aer_scheduler) as backend:
        qaoa = QAOA(
            problem,
            n_layers=1,
            backend=backend,
            optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
            max_iterations=1,
            seed=3,
        )
        qaoa.run()
        assert len(qaoa.solution_bitstring) == 6
        ours = qaoa.evaluate(params, qaoa.cost_preprocessor())
    reference = qaoa.evaluate(params, qaoa.cost_preprocessor(), backend=QiskitSimulator())
    for i in range(len(params)):
        assert float(np.ravel(ours[i])[0]) == pytest.approx(
            float(np.ravel(reference[i])[0]), abs=1e-9, rel=0
        )


@pytest.mark.parametrize("mode", [BatchMode.MERGED, BatchMode.OFF])
def test_partitioning_ensemble(aer_scheduler: ThreadedScheduler, mode: BatchMode) -> None:
    graph = nx.cycle_graph(8)
    config = GraphPartitioningConfig(max_n_nodes_per_cluster=4)
    with divi_backend(aer_scheduler, shots=1000) as backend:
        ensemble = PartitioningProgramEnsemble(
            problem=MaxCutProblem(graph, config=config),
            n_layers=1,
            optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
            max_iterations=1,
            backend=backend,
        )
        ensemble.run(batch_config=BatchConfig(mode=mode))
        nodes, energy = ensemble.aggregate_results()
    assert ensemble.total_circuit_count > 0
    assert set(nodes) <= set(graph.nodes) and energy <= 0
    jobs = aer_scheduler.jobs()
    assert jobs and all(job.status == "COMPLETED" for job in jobs)
    if mode is BatchMode.MERGED:  # the coordinator merged the two programs' circuits
        assert any(len({label.split(":")[0] for label in job.labels}) > 1 for job in jobs)


def test_standalone_pipeline_bell_state(aer_scheduler: ThreadedScheduler) -> None:
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    pipeline = CircuitPipeline(stages=[QiskitSpecStage(), MeasurementStage()])
    with divi_backend(aer_scheduler, shots=2000) as backend:
        probabilities = pipeline.run(initial_spec=bell, env=PipelineEnv(backend=backend)).value
    assert set(probabilities) == {"00", "11"}
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert abs(probabilities["00"] - 0.5) < 4 * math.sqrt(0.25 / 2000)
