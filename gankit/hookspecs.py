"""Every hook a plugin can implement. Each docstring is that hook's documentation;
docs/plugins.md is the full reference (events, parameters, primitives, what is stable),
for plugin API version ``gankit.API_VERSION``.

Each hook receives a ``register`` callback and calls it once per component:

    register(name, factory, *, description, params=None, requires=(), backends=None, default=False)

- ``name``: what a recipe's ``use = "..."`` names.
- ``factory``: called with the component's validated parameters (an instance of
  ``params``) and returns the component; see each hook for what it is called with.
- ``description``: one line shown by ``gankit list-plugins``.
- ``params``: a pydantic model declaring the parameters (types, defaults, ranges);
  unknown keys are rejected. ``None`` means the component takes no parameters.
- ``requires``: importable module names (``"torch"``) the component needs; checked with
  ``importlib.util.find_spec``, never imported, so listing plugins stays fast.
- ``backends``: architectures only. ``None`` (the default) when the architecture is
  described with ``gankit.nn`` and so runs on every backend; otherwise the names of the
  backends it gives native builders for, or a function of its validated parameters
  that returns either.
- ``default``: metrics and feature extractors. Used when a recipe's ``[eval]`` or
  ``gankit evaluate`` names none of the kind; an outside plugin's comes first.
"""

import pluggy

hookspec = pluggy.HookspecMarker("gankit")


@hookspec
def register_datasets(register):
    """Register datasets. ``factory(params, context)`` returns a ``gankit.data.Dataset``:
    ``load(split) -> gankit.data.ImageData`` giving uint8 (N, H, W, C) images and labels.
    ``context`` is a ``gankit.data.DataContext`` (cache directory, warnings)."""


@hookspec
def register_architectures(register):
    """Register architectures. ``factory(params, spec)`` gets the dataset's
    ``gankit.data.DataSpec`` and returns a ``gankit.nn.Architecture``: a generator and a
    discriminator described with ``gankit.nn``, plus the latent size."""


@hookspec
def register_backends(register):
    """Register backends. ``factory(params)`` returns a ``gankit.backend.Backend``: its
    ``trainer(architecture, spec, train, seed)`` compiles ``gankit.nn`` networks and owns the
    networks, optimizers, checkpoints and sampling; optionally ``launch_command`` and
    ``world()`` train one run on several processes (``gankit run --gpus K``)."""


@hookspec
def register_exporters(register):
    """Register exporters. ``factory(params, run_dir)`` returns a ``gankit.events.Exporter``
    that receives every event of a run (samples, checkpoints, the end of the run).
    ``run_dir`` is a ``gankit.rundir.RunDir``: it names the run's files (``samples``,
    ``sample_images()``, ``animations()``, ``metrics``, ...) and is path-like (``run_dir / "x"``).
    A factory that reads another exporter's files says so with ``needs_exporters``
    (``gif`` has ``("png",)``): a recipe without them is refused before anything runs."""


@hookspec
def register_metrics(register):
    """Register metrics. ``factory(params)`` returns a ``gankit.evaluation.Metric``: it gets
    the ``gankit.evaluation.Features`` of the generated images (and of the real ones, when
    its ``uses_real`` is true) and returns named scores, e.g. ``{"kid": 0.01, "kid_std":
    0.002}``; the one named like the metric is its headline, better when higher if its
    ``higher_is_better`` is true (that picks a run's best checkpoint). ``params`` are set
    by ``[eval] metrics = [{ use = "name", key = value }]`` or ``--metric name:key=value``.
    ``Features.labels`` holds each image's class (int64; the real ones' from the dataset,
    -1 where unlabelled; the generated ones' the class they were drawn for), or None for an
    unconditional run's images, and ``Features.class_names`` names the labels."""


@hookspec
def register_feature_extractors(register):
    """Register feature extractors for metrics. ``factory(params, context)`` gets a
    ``gankit.evaluation.ExtractorContext`` (cache directory, the run's labelled training
    data) and returns a ``gankit.evaluation.FeatureExtractor``: uint8 (N, H, W, C) images
    in, ``Features`` out, plus a description (weights and their sha256) that is recorded
    with every score."""
