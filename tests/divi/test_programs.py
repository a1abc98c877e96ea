"""Real qoro-divi programs on asyncjob: `DiviBackend` is the one changed line.

Each program runs end to end against a local scheduler simulating with
qiskit-aer; energies and costs at fixed parameters are compared with divi's
in-process `QiskitSimulator`: equal within 1e-9 in expectation-value mode,
within 4 standard errors of its exact energy when sampling.
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
from qiskit.quantum_info import SparsePauliOp

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


def exact_values(op: SparsePauliOp) -> np.ndarray:
    """The exact expectation value of `op` in the H2 ansatz state at each of `PARAMS`."""
    labels = op.paulis.to_labels()
    constant = sum(
        float(c.real) for p, c in zip(labels, op.coeffs, strict=True) if set(p) == {"I"}
    )
    terms = [(p, c) for p, c in zip(labels, op.coeffs, strict=True) if set(p) != {"I"}]
    if not terms:
        return np.full(len(PARAMS), constant)
    simulator = QiskitSimulator()
    program = VQE(
        HamiltonianProblem(SparsePauliOp(*zip(*terms, strict=True)), n_electrons=2),
        ansatz=HartreeFockAnsatz(),
        backend=simulator,
        optimizer=ScipyOptimizer(ScipyMethod.COBYLA),
        max_iterations=1,
        seed=1,
    )
    return constant + np.array(energies(program, simulator)[0])


def qwc_groups() -> list[SparsePauliOp]:
    """H2's qubit-wise commuting groups (as divi measures them), without the constant."""
    groups = []
    for group in H2.group_commuting(qubit_wise=True):
        terms = [
            (label, c)
            for label, c in zip(group.paulis.to_labels(), group.coeffs, strict=True)
            if set(label) != {"I"}
        ]
        if terms:
            groups.append(SparsePauliOp(*zip(*terms, strict=True)))
    return groups


def shot_noise_variance(shots: int) -> np.ndarray:
    """The exact variance of the sampled H2 energy at `PARAMS`, each group measured `shots` times.

    Terms of one group come from the same shots, so their covariance counts:
    Var = sum over groups g of (<H_g^2> - <H_g>^2) / shots. divi's
    `return_variance` drops that covariance (its docstring says so), which
    underestimates this variance 1.9-2.9 times at `PARAMS` (it is sampled).
    """
    variance = np.zeros(len(PARAMS))
    for group in qwc_groups():
        variance += (exact_values((group @ group).simplify()) - exact_values(group) ** 2) / shots
    return variance


def job_shots(threaded: ThreadedScheduler) -> list[int]:
    """The shots of each circuit of the scheduler's last job."""
    return [_shots(r) for r in threaded.scheduler.job_results(threaded.jobs()[-1].id) or []]


def assert_within_shot_noise(ours: Any, shots: list[int]) -> None:
    """`ours` within 4 standard errors of divi's exact energy (in-process, expectation values).

    The standard error uses the fewest shots any group got (exact when all got the same).
    """
    assert len(shots) == len(PARAMS) * len(qwc_groups())
    exact, _ = energies(h2_vqe(QiskitSimulator()), QiskitSimulator())
    se = np.sqrt(shot_noise_variance(min(shots)))
    for x, y, s in zip(ours[0], exact, se, strict=True):
        assert abs(x - y) <= 4 * s, (x, y, s)


def test_divi_variance_drops_intra_group_covariance() -> None:
    """Why the sampling tests compute their own standard error: divi's is too small.

    divi's estimate is itself sampled (2.2-2.9x too small over unseeded runs, once
    1.9x): the simulator is seeded, so the test does not fail at random.
    """
    simulator = QiskitSimulator(shots=4000, force_sampling=True, simulation_seed=1)
    _, divi_variance = energies(h2_vqe(simulator))
    assert np.all(shot_noise_variance(4000) > 2 * np.array(divi_variance))


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
        shots = job_shots(aer_scheduler)
    assert set(shots) == {4000}
    assert_within_shot_noise(ours, shots)


def test_per_group_shot_allocation(aer_scheduler: ThreadedScheduler) -> None:
    options = {"grouping_strategy": "qwc", "shot_distribution": "weighted"}
    with divi_backend(aer_scheduler, supports_expval=False) as backend:
        vqe = h2_vqe(backend, **options)
        ours = energies(vqe)
        job = aer_scheduler.jobs()[-1]
    # Weighted: the groups got different shares of the shots.
    shots = [_shots(r) for r in aer_scheduler.scheduler.job_results(job.id) or []]
    assert len(set(shots)) > 1
    assert_within_shot_noise(ours, shots)


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
