"""The sampler name table: options, capability checks, and the import structure of solvers/."""

import ast
import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import pytest

from jaxdiff.data.toy import mixture_8gaussians
from jaxdiff.processes import VE, VP, SubVP, mixture_score_fn
from jaxdiff.processes.base import CAPABILITIES, EXACT_LINEAR_FLOW, NOISE_IN_EVERY_COORDINATE
from jaxdiff.processes.cld import CLD
from jaxdiff.processes.discrete import DiscreteChain
from jaxdiff.solvers.base import IncompatibleSamplerError, Sampler
from jaxdiff.solvers.samplers import (
    SAMPLERS,
    AdaptiveProbabilityFlow,
    PredictorCorrector,
    check_sampler,
    make_sampler,
    sample,
    sampler_name,
    sampler_names_for,
    sampler_options,
)
from jaxdiff.solvers.sscs import SSCS

MIX = mixture_8gaussians(radius=2.0, std=0.1)
PROCESSES = {"vp": VP(), "subvp": SubVP(), "ve": VE(sigma_max=10.0), "cld": CLD()}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_name_builds_with_its_defaults(name):
    sampler = make_sampler(name)
    assert isinstance(sampler, Sampler)
    assert sampler_name(sampler) == name
    for option, default in sampler_options(name).items():
        assert getattr(sampler, option) == default
    assert type(sampler).requires <= set(CAPABILITIES)


def test_options_are_the_samplers_own_fields():
    assert sampler_options("em") == {} and sampler_options("ode_heun") == {}
    assert sampler_options("pc") == {"snr": 0.16, "n_corrector": 1}
    assert sampler_options("sscs") == {"num_stab": 0.0}
    for name in ("ode_tsit5", "ode_dopri5"):
        assert sampler_options(name) == {"rtol": 1e-5, "atol": 1e-5, "max_steps": 4096}
    pc = make_sampler("pc", snr=0.2, n_corrector=3)
    assert isinstance(pc, PredictorCorrector) and (pc.snr, pc.n_corrector) == (0.2, 3)
    ode = make_sampler("ode_dopri5", rtol=1e-3)
    assert isinstance(ode, AdaptiveProbabilityFlow) and (ode.rtol, ode.atol) == (1e-3, 1e-5)
    assert make_sampler("sscs", num_stab=1e-6).num_stab == 1e-6
    # The defaults live in the classes' fields, nowhere else.
    fields = {f.name: f.default for f in dataclasses.fields(AdaptiveProbabilityFlow)}
    assert fields["rtol"] == sampler_options("ode_tsit5")["rtol"]


def test_option_errors_name_the_sampler_and_its_options():
    with pytest.raises(ValueError, match=r"^unknown sampler 'nope'; known: \['ancestral', 'ddim',"):
        make_sampler("nope")
    with pytest.raises(ValueError, match=r"^sampler 'em' has no option 'rtol'; its options: \(\)$"):
        make_sampler("em", rtol=1e-3)
    with pytest.raises(ValueError, match=r"^sampler 'ode_euler' has no option 'atol'"):
        make_sampler("ode_euler", atol=1e-3)
    with pytest.raises(ValueError, match=r"'pc' has no option 'rtol'; its options: \(snr, n_"):
        make_sampler("pc", rtol=1e-3)
    with pytest.raises(ValueError, match=r"'sscs' has no option 'snr'; its options: \(num_stab\)"):
        make_sampler("sscs", snr=0.1)


@pytest.mark.parametrize("sampler", ["sscs", SSCS()])
def test_sscs_on_vp_fails_before_tracing_with_one_line(sampler):
    def score(y, t):
        raise AssertionError("traced the score")

    with pytest.raises(IncompatibleSamplerError) as info:
        sample(VP(), score, jax.random.key(0), (4, 2), sampler, steps=3)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, ValueError)
    assert msg.startswith("sampler 'sscs' needs a process with an exactly solvable linear part")
    assert f"(capability '{EXACT_LINEAR_FLOW}'); VP lacks it." in msg
    assert msg.endswith("Samplers for VP: " + ", ".join(sampler_names_for(VP())))


def test_capabilities_decide_which_names_fit():
    """Pinned: PC's corrector needs noise in every coordinate (CLD's score models return a zero
    x-score), SSCS an exact linear flow (CLD only); a discrete chain takes no SDE sampler."""
    assert set(sampler_names_for(VP())) == set(SAMPLERS) - {"sscs", "gddim", "gddim_sde"}
    assert sampler_names_for(VP()) == sampler_names_for(SubVP()) == sampler_names_for(VE())
    exponential = {"ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "deis", "ipndm"}
    exponential |= {"dpm_solver", "dpmpp_2s"}  # singlestep DPM-Solver / DPM-Solver++(2S)
    exponential |= {"ancestral"}  # the DDPM chain of a scalar kernel (solvers/ancestral.py)
    assert set(sampler_names_for(CLD())) == set(SAMPLERS) - {"pc", "edm_heun"} - exponential
    chain = DiscreteChain.vp(2)
    assert sampler_names_for(chain) == []
    with pytest.raises(IncompatibleSamplerError, match="'sde'.*Samplers for DiscreteChain: none"):
        check_sampler("em", chain)
    with pytest.raises(IncompatibleSamplerError, match=f"'{NOISE_IN_EVERY_COORDINATE}'.*CLD"):
        check_sampler(make_sampler("pc"), CLD())


def run_or_trace(process, name, run):
    """``sample`` with the exact mixture score, 6 steps: jitted and run, or only traced."""
    score = mixture_score_fn(process, MIX.weights, MIX.means, MIX.stds)
    fn = lambda k: sample(process, score, k, (16, 2), name, steps=6)
    return jax.jit(fn)(jax.random.key(0)) if run else jax.eval_shape(fn, jax.random.key(0))


@pytest.mark.parametrize("process_name", sorted(PROCESSES))
def test_requires_is_met_where_the_table_says_it_works(process_name):
    """Every sampler the table lists for a process traces on it (the old SSCS-on-VP failure
    was a trace-time crash); every other one is refused by ``sample``."""
    process = PROCESSES[process_name]
    fits = sampler_names_for(process)
    for name in SAMPLERS:
        if name in fits:
            check_sampler(make_sampler(name), process)
            assert run_or_trace(process, name, run=False).data.shape == (16, 2), name
        else:
            with pytest.raises(IncompatibleSamplerError):
                run_or_trace(process, name, run=False)


@pytest.mark.slow
@pytest.mark.parametrize("process_name", sorted(PROCESSES))
def test_every_listed_sampler_runs_on_its_process(process_name):
    """... and runs: finite samples, NFE above the step count (6 steps + denoising)."""
    process = PROCESSES[process_name]
    for name in sampler_names_for(process):
        out = run_or_trace(process, name, run=True)
        assert bool(jnp.all(jnp.isfinite(out.data))) and int(out.nfe) > 6, name


SOLVERS = pathlib.Path(__file__).parents[1] / "jaxdiff" / "solvers"
PROCESSES_DIR = SOLVERS.parent / "processes"


def jaxdiff_imports(path: pathlib.Path) -> set[str]:
    """Every ``jaxdiff.*`` module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxdiff"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("jaxdiff")}
    return names


def test_solvers_and_processes_import_downwards_only():
    upper = ("jaxdiff.methods", "jaxdiff.train", "jaxdiff.build", "jaxdiff.objectives")
    for path in [*SOLVERS.glob("*.py"), *PROCESSES_DIR.glob("*.py")]:
        bad = [m for m in jaxdiff_imports(path) if m.startswith(upper)]
        assert not bad, (path.name, bad)
    # No circles inside solvers/: a depth-first search over the module graph.
    graph = {
        f"jaxdiff.solvers.{p.stem}": {m for m in jaxdiff_imports(p) if "solvers." in m}
        for p in SOLVERS.glob("*.py")
    }
    state: dict[str, str] = {}

    def visit(mod, path):
        assert state.get(mod) != "open", " -> ".join([*path, mod])
        if state.get(mod) is None:
            state[mod] = "open"
            for dep in graph.get(mod, ()):
                visit(dep, [*path, mod])
            state[mod] = "done"

    for mod in graph:
        visit(mod, [])
    assert graph["jaxdiff.solvers.sscs"] == {"jaxdiff.solvers.base", "jaxdiff.solvers.reverse"}
    assert all(m in graph for deps in graph.values() for m in deps)
