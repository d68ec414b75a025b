"""The compiled training loop: one tf.function runs a chunk of steps and returns every norm."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from mnist_clip.config import Config
from mnist_clip.data import Dataset
from mnist_clip.nn import Net
from mnist_clip.nn.model import (
    EXAMPLE_LOSSES,
    LOSS_FUNCTIONS,
    accuracy,
    config_params,
    forward,
    inactive_fraction,
    init_state,
    masked_mean,
    moving_stats_after,
    one_hot,
    prepare_inputs,
)
from mnist_clip.runs.schema import data_columns, gradient_columns, step_value_columns
from mnist_clip.training.clipping import AutoClipHistory, clip_only, clip_step
from mnist_clip.training.dirt import batch_members, dirty_examples, dirty_per_batch, make_dirty
from mnist_clip.training.finite import first_nonfinite_write, l2_norm, nonfinite_kind, written_nonfinite
from mnist_clip.training.optimizers import OptimizerState, UpdateRule, hyperparameters, next_state


def step_values(params: dict[str, tf.Variable], x: tf.Tensor, y: tf.Tensor, clip: str, threshold,
                net: Net | str = "relu", autoclip: AutoClipHistory | None = None, loss_name: str = "mse",
                real: tf.Tensor | None = None):
    """One step's gradients and everything logged about them, before any update.

    `threshold` is clip_norm (a number or a scalar tensor); for autoclip, `autoclip`
    holds the history the step's threshold comes from. `net` may be an activation name
    for a plain MLP of the params' depth. `real` [B] marks the real examples of a padded
    batch: the loss, accuracy, batch statistics and inactive units are theirs, and so are
    the gradients (the padding's rows get exactly zero).
    Returns (clipped gradients, finite flag, the gradient_columns vector, batch norm's
    batch statistics).
    """
    names = list(params)
    variables = [params[name] for name in names]
    activation = net if isinstance(net, str) else net.activation
    with tf.GradientTape() as tape:
        fwd = forward(params, x, net, real=real)
        loss = batch_loss(loss_name, y, fwd.out, real)
    # Gradients w.r.t. the pre-activations z_1..z_L (the recurrent net's states h_1..h_28) are
    # the back-propagated signals; asking for them with the weights costs one backward pass.
    gradients = tape.gradient(loss, variables + fwd.signals)
    grads, deltas = gradients[: len(names)], gradients[len(names) :]
    clipped, fired, norms_before, global_before, norms_after, extra = clip_step(clip, grads, variables, threshold, autoclip)
    fired = [tf.cast(f, tf.float32) for f in fired]
    global_after = tf.norm(tf.stack(norms_after))
    finite = tf.math.is_finite(loss) & tf.math.is_finite(global_before)
    interleaved = [n for pair in zip(norms_before, norms_after) for n in pair]
    activity = [inactive_fraction(activation, h, rows_real(real, h)) for h in fwd.units]
    values = tf.stack(
        [
            loss,
            accuracy(y, fwd.out, real),
            global_before,
            global_after,
            tf.reduce_max(tf.stack(fired)),
            *interleaved,
            *fired,
            *(l2_norm(delta) for delta in deltas),
            *activity,
            *extra,
        ]
    )
    return clipped, finite, values, fwd.batch_stats


def batch_loss(loss_name: str, y: tf.Tensor, out: tf.Tensor, real: tf.Tensor | None = None) -> tf.Tensor:
    """The loss of the batch: its mean over the real examples when `real` marks them."""
    if real is None:
        return LOSS_FUNCTIONS[loss_name](y, out)
    return masked_mean(EXAMPLE_LOSSES[loss_name](y, out), real)


def rows_real(real: tf.Tensor | None, units: tf.Tensor) -> tf.Tensor | None:
    """`real` for a tensor of units whose rows are the batch's, repeated (the recurrent net's
    28 time steps, each of the whole batch)."""
    if real is None:
        return None
    repeats = int(units.shape[0]) // int(real.shape[0])
    return tf.tile(real, [repeats]) if repeats > 1 else real


# Compiled programs, one per shape of the work and per setting that changes the program
# (not per learning rate, threshold, optimizer numbers or weights, which are its inputs): every
# run and sweep cell of a process with the same net, clipping method and optimizer reuses one.
_PROGRAMS: dict = {}


def compiled_program(net: Net, clip: str, trained: tuple[bool, ...], stop_on_nonfinite: bool,
                     log_norms: bool, percentile: float | None,
                     rule: UpdateRule = UpdateRule("sgd"), loss_name: str = "mse", log_updates: bool = True):
    key = (net, clip, trained, stop_on_nonfinite, log_norms, percentile, rule, loss_name, log_updates)
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    names, weights = net.names, net.weights
    n_values = len(step_value_columns(net, clip) if log_updates else gradient_columns(net, clip)) if log_norms else 1
    after_columns = [gradient_columns(net, clip).index(f"{name}_after") for name in names]

    def one_step(variables, hyper, threshold, autoclip, optimizer_state, moving, x, y, size):
        params = dict(zip(names, variables))
        real = tf.range(int(x.shape[0])) < size  # the batch's real examples; the rest pads it
        if log_norms:
            clipped, finite, values, batch_stats = step_values(params, x, y, clip, threshold, net, autoclip,
                                                               loss_name, real)
            # read before the update: the weights the step's gradients were taken at
            weight_norms = tf.stack([l2_norm(params[name]) for name in weights])
        else:
            with tf.GradientTape() as tape:
                fwd = forward(params, x, net, real=real)
                loss = batch_loss(loss_name, y, fwd.out, real)
            clipped = clip_only(clip, tape.gradient(loss, variables), variables, threshold, autoclip)
            finite, values, batch_stats = tf.math.is_finite(loss), tf.reshape(loss, [1]), fwd.batch_stats

        # No branch around the update: XLA fuses it with the clipping's pass.
        iterations, slot_variables = optimizer_state
        moving_after = moving_stats_after(moving, batch_stats)
        after = next_state(rule, variables, clipped, trained, iterations, slot_variables, hyper)
        slots = iter(zip(slot_variables, after.slots))
        writes = [(moving[name], value) for name, value in moving_after.items()]
        for variable, new_value, is_trained in zip(variables, after.weights, trained):
            if is_trained:
                writes += [next(slots) for _ in rule.slots] + [(variable, new_value)]
        # Committed whatever it holds: a step that is not finite stops the chunk, and run_chunk
        # puts back the state before it (see make_train_chunk).
        for variable, value in writes:
            variable.assign(value)
        iterations.assign_add(1)
        written = first_nonfinite_write([nonfinite_kind(value) for _, value in writes])
        finite = finite & tf.equal(written, 0.0)
        if not (log_norms and log_updates):
            return finite, tf.concat([values, [written]], axis=0)
        if rule == UpdateRule("sgd"):
            # plain SGD's step is lr g: its norm is lr times the clipped norm, already logged
            update_norms = tf.stack([hyper[0] * values[column] if is_trained else tf.constant(0.0)
                                     for column, is_trained in zip(after_columns, trained)])
        else:
            update_norms = tf.stack([l2_norm(step) if step is not None else tf.constant(0.0) for step in after.steps])
        return finite, tf.concat([values, update_norms, weight_norms, [written]], axis=0)

    # XLA fuses the element-wise work of a step (clipping, norms, the update)
    # into few passes over memory; it needs static shapes, hence [n, B, ...].
    @tf.function(jit_compile=True, autograph=False)
    def run_chunk(variables, hyper, threshold, autoclip_state, optimizer_state, moving, xb, yb, sizes, limit):
        autoclip = None
        if percentile is not None:
            autoclip = AutoClipHistory.bound(*autoclip_state, percentile)
        n_steps = tf.minimum(tf.shape(xb)[0], limit)
        records = tf.TensorArray(tf.float32, size=tf.shape(xb)[0], element_shape=[n_values + 1])

        def keep_going(i, stopped, records):
            return tf.logical_and(i < n_steps, tf.logical_not(stopped))

        def body(i, stopped, records):
            finite, values = one_step(variables, hyper, threshold, autoclip, optimizer_state, moving,
                                      xb[i], yb[i], sizes[i])
            stopped = tf.logical_not(finite) if stop_on_nonfinite else stopped
            return i + 1, stopped, records.write(i, values)

        steps_run, stopped, records = tf.while_loop(keep_going, body, (tf.constant(0), tf.constant(False), records))
        return records.stack(), steps_run, stopped

    _PROGRAMS[key] = run_chunk
    return run_chunk


def make_train_chunk(
    params: dict[str, tf.Variable],
    config: Config,
    trainable: Sequence[str] | None = None,
    stop_on_nonfinite: bool = True,
    log_norms: bool = True,
    autoclip: AutoClipHistory | None = None,
    log_updates: bool = True,
    moving: dict[str, tf.Variable] | None = None,
    optimizer_state: OptimizerState | None = None,
):
    """A function (xb [n, B, 784], yb [n, B, 10], sizes [n] or None) -> (records [n, value
    columns + 1], steps run, stopped).

    It runs n steps of batch size B, batch i being the first sizes[i] rows of xb[i] (all B
    when sizes is None; the rest pads a short batch to B), in one XLA-compiled loop, keeps
    each step's values in a TensorArray and hands them back once. Each record ends with
    what the step wrote non-finite (first_nonfinite_write; 0 when nothing).
    The config gives the clipping method and threshold, the loss, the activation and
    the optimizer, whose state lives beside the weights across chunks.
    With stop_on_nonfinite, a step whose loss or gradients are NaN/Inf, or that would write
    a NaN/Inf (weights, optimizer state, moving statistics), is recorded but not applied,
    and the chunk ends there (rows after it are zeros): the compiled step applies every
    step, with no branch, and checks what it wrote; after a failing one, the state the chunk
    began with is put back and the steps before it run again. With log_norms=False only the loss
    is kept (the benchmark's baseline for what logging costs); with log_updates=False,
    everything but the steps taken and the weights' norms (what logging those costs). For
    clip="autoclip", `autoclip` holds the history of global norms across chunks;
    for batch norm, `moving` holds the moving statistics each applied step updates; the
    optimizer's state is `optimizer_state` (by default a new one, zero). The function's
    `program` and `optimizer_state` are the compiled program and that state.
    """
    names = list(params)
    variables = [params[name] for name in names]
    trained = tuple(trainable is None or name in trainable for name in names)
    if config.clip == "autoclip" and autoclip is None:
        raise ValueError("clip='autoclip' needs its AutoClipHistory")
    rule = UpdateRule.of(config)
    program = compiled_program(config.net, config.clip, trained, stop_on_nonfinite, log_norms,
                               autoclip.percentile if autoclip is not None else None, rule, config.loss,
                               log_updates)
    hyper = hyperparameters(config)
    threshold_value = tf.constant(config.clip_norm, tf.float32)
    state = autoclip.variables() if autoclip is not None else ()
    if optimizer_state is None:
        optimizer_state = OptimizerState(rule, variables, trained)
    optimizer_variables = optimizer_state.variables()
    moving = moving if moving is not None else {}

    written = [*moving.values(), *variables, *optimizer_variables[1], optimizer_variables[0], *state]
    written_order = [moving[tensor.name] for tensor in config.net.state]  # as written_tensors lists them
    for variable, slots, is_trained in zip(variables, optimizer_state.slots, trained):
        written_order += [*slots, variable] if is_trained else []

    def run(xb, yb, sizes, limit):
        return program(variables, hyper, threshold_value, state, optimizer_variables, moving, xb, yb, sizes,
                       tf.constant(limit, tf.int32))

    def run_chunk(xb, yb, sizes=None):
        if sizes is None:
            sizes = tf.fill([int(xb.shape[0])], int(xb.shape[1]))
        if not stop_on_nonfinite:
            return run(xb, yb, sizes, int(xb.shape[0]))
        before = [variable.numpy() for variable in written]
        records, steps_run, stopped = run(xb, yb, sizes, int(xb.shape[0]))
        if bool(stopped):
            # The failing step was applied: put back the state the chunk began with and run the
            # steps before it again. XLA on the CPU computes them bit for bit as it did.
            code = float(records[int(steps_run) - 1, -1])
            if code:  # read what the step wrote while it is there: NaN or Inf exactly
                index, value = next((i, v.numpy()) for i, v in enumerate(written_order) if not np.isfinite(v.numpy()).all())
                code = 2 * index + 1 + float(np.isnan(value).any())
            for variable, value in zip(written, before):
                variable.assign(value)
            if int(steps_run) > 1:
                run(xb, yb, sizes, int(steps_run) - 1)
            if code:
                records = tf.tensor_scatter_nd_update(records, [[int(steps_run) - 1, int(records.shape[1]) - 1]], [code])
        return records, steps_run, stopped

    run_chunk.program = program
    run_chunk.optimizer_state = optimizer_state
    return run_chunk


def padded_order(order: np.ndarray, batch_rows: int) -> np.ndarray:
    """The epoch's example order with a short last batch padded to batch_rows by repeating its
    own examples (so that the padding is as finite as the batch; it is masked out anyway)."""
    short = len(order) % batch_rows
    if not short:
        return order
    last = order[len(order) - short:]
    return np.concatenate([order, last[np.arange(batch_rows - short) % short]])


_EVALUATORS: dict = {}


def make_evaluate(params: dict[str, tf.Variable], net: Net, loss_name: str = "mse",
                  moving: dict[str, tf.Variable] | None = None):
    """(x, y) -> (test loss, test accuracy) with the current parameters, batch norm in inference
    mode (its moving statistics); one traced function per net and loss, shared by every run."""
    names = list(params)
    key = (net, loss_name)
    if key not in _EVALUATORS:
        @tf.function(reduce_retracing=True, autograph=False)
        def evaluate_with(variables, moving_values, x, y):
            out = forward(dict(zip(names, variables)), x, net, moving_values if net.state else None).out
            return LOSS_FUNCTIONS[loss_name](y, out), accuracy(y, out)

        _EVALUATORS[key] = evaluate_with
    evaluate_with = _EVALUATORS[key]
    variables = [params[name] for name in names]
    moving = moving if moving is not None else {}
    return lambda x, y: evaluate_with(variables, moving, x, y)


def epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation used for one epoch when shuffling is on."""
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


@dataclass
class EpochResult:
    epoch: int
    first_step: int
    columns: tuple[str, ...]  # the names of the values' columns
    values: np.ndarray  # [steps run, len(columns)]
    test_loss: float
    test_accuracy: float
    seconds: float
    train_seconds: float
    finished: bool  # False when a non-finite step stopped the run in this epoch
    moved: dict[str, float] = field(default_factory=dict)  # per weight: ||w - w_init|| / ||w_init||
    # the epoch's first step that computed a NaN/Inf to write ({"step", **Trainer.written}), or None
    nonfinite_write: dict | None = None

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]


class Trainer:
    """The experiment of a Config on a Dataset, run one epoch (one compiled chunk) at a time."""

    def __init__(self, config: Config, dataset: Dataset, log_norms: bool = True, log_updates: bool = True):
        self.config = config
        self.params = config_params(config)
        self.moving = init_state(config.net)
        self.columns = (*step_value_columns(config.net, config.clip), *data_columns(config.to_dict()))
        self.initial_params = {name: v.numpy() for name, v in self.params.items()}
        # each weight's start in float64 and its norm, for moved()
        self.starts = {name: (start, np.linalg.norm(start)) for name in config.net.weights
                       for start in [self.initial_params[name].astype(np.float64)]}
        x_train = prepare_inputs(dataset.x_train, config.input_scale)
        self.dirty = dirty_examples(len(x_train), config.dirty_fraction, config.seed)
        self.clean_largest_input = float(np.abs(x_train).max()) if len(x_train) else 0.0
        x_train = make_dirty(x_train, self.dirty, config.dirty_scale)
        self.largest_input = np.abs(x_train).max(axis=1)  # per example, for the diagnosis of a failing batch
        self.x_train = tf.constant(x_train)
        self.y_train = tf.constant(one_hot(dataset.y_train))
        self.x_test = tf.constant(prepare_inputs(dataset.x_test, config.input_scale))
        self.y_test = tf.constant(one_hot(dataset.y_test))
        n_train = len(dataset.y_train)
        self.steps_per_epoch = config.steps_per_epoch(n_train)
        # One program runs every batch: a short last batch is padded to the full one and masked.
        # A batch never holds more than the training set, so neither does the program's.
        self.batch_rows = max(1, min(config.batch_size, n_train))
        self.batch_sizes = tf.constant([min(config.batch_size, n_train - first)
                                        for first in range(0, n_train, config.batch_size)], tf.int32)
        self.chunk = None
        if not config.shuffle:
            # every epoch has the same batches: make them once, and keep only them
            self.chunk = self.epoch_chunk(0)
            self.x_train = self.y_train = None
        self.trained = tuple(name in config.trainable for name in self.params)
        self.run_chunk = make_train_chunk(
            self.params,
            config,
            config.trainable,
            stop_on_nonfinite=config.on_nonfinite == "stop",
            log_norms=log_norms,
            autoclip=AutoClipHistory(config.epochs * self.steps_per_epoch, config.clip_percentile)
            if config.clip == "autoclip" else None,
            log_updates=log_updates,
            moving=self.moving,
        )
        self.evaluate = make_evaluate(self.params, config.net, config.loss, self.moving)

    def epoch_chunk(self, epoch: int) -> tuple[tf.Tensor, tf.Tensor]:
        """The epoch's batches as one chunk (xb [steps, B, 784], yb [steps, B, 10]), in file order
        or shuffled; a short last batch is padded to B with its own examples (batch_sizes says
        how many rows of each batch are real)."""
        if self.chunk is not None:
            return self.chunk
        order = padded_order(self.epoch_examples(epoch), self.batch_rows)
        shape = [len(order) // self.batch_rows, self.batch_rows]
        x, y = (tf.reshape(tf.gather(t, order), shape + t.shape[1:]) for t in (self.x_train, self.y_train))
        return x, y

    def epoch_batches(self, epoch: int) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """The epoch's real batches as (xb, yb) pairs of static shape: [full batches, B, ...] and,
        when the size does not divide, [1, remainder, ...] for the shorter last batch."""
        xb, yb = self.epoch_chunk(epoch)
        short = int(self.batch_sizes[-1])
        n_full = len(self.batch_sizes) - (short < self.batch_rows)
        parts = [(xb[:n_full], yb[:n_full])] if n_full else []
        if short < self.batch_rows:
            parts.append((xb[n_full:, :short], yb[n_full:, :short]))
        return parts

    def epoch_examples(self, epoch: int) -> np.ndarray:
        """The training examples (indices) in the order the epoch trains them."""
        n_train = len(self.largest_input)
        return epoch_order(n_train, self.config.seed, epoch) if self.config.shuffle else np.arange(n_train)

    def batch_facts(self, step: int) -> dict:
        """What the step's batch held: its size, its largest |input| and its dirty examples."""
        batches = batch_members(self.epoch_examples(step // self.steps_per_epoch), self.config.batch_size)
        members = batches[step % self.steps_per_epoch]
        return {"step": step, "batch_size": len(members), "largest_abs_input": float(self.largest_input[members].max()),
                "dirty_in_batch": int(np.isin(members, self.dirty).sum())}

    def train_chunks(self, epoch: int) -> tuple[np.ndarray, bool, np.ndarray]:
        """Run one epoch's steps in one call of the compiled program: the values of the steps
        actually run, whether a non-finite step stopped them, and per step what it wrote
        non-finite (0 for nothing; see written)."""
        xb, yb = self.epoch_chunk(epoch)
        records, steps_run, stopped = self.run_chunk(xb, yb, self.batch_sizes)
        records = records.numpy()[: int(steps_run)]
        return records[:, :-1], bool(stopped), records[:, -1]

    def written(self, code: float) -> dict | None:
        """What a step's record says it wrote non-finite first (see written_nonfinite)."""
        return written_nonfinite(code, self.config.net, UpdateRule.of(self.config), self.trained)

    def run_epoch(self, epoch: int) -> EpochResult:
        started = time.perf_counter()
        values, stopped, writes = self.train_chunks(epoch)
        train_seconds = time.perf_counter() - started
        nonfinite_write = None
        if writes.any():
            step = int(np.argmax(writes != 0))
            nonfinite_write = {"step": epoch * self.steps_per_epoch + step, **self.written(writes[step])}
        if data_columns(self.config.to_dict()):
            dirty = dirty_per_batch(self.epoch_examples(epoch), self.config.batch_size, self.dirty)
            values = np.column_stack([values, dirty[: len(values)].astype(values.dtype)])
        test_loss, test_accuracy = self.evaluate(self.x_test, self.y_test)
        return EpochResult(
            epoch=epoch,
            columns=self.columns,
            first_step=epoch * self.steps_per_epoch,
            values=values,
            test_loss=float(test_loss),
            test_accuracy=float(test_accuracy),
            seconds=time.perf_counter() - started,
            train_seconds=train_seconds,
            finished=not stopped,
            moved=self.moved(),
            nonfinite_write=nonfinite_write,
        )

    def moved(self) -> dict[str, float]:
        """Each weight's distance from its initial value, relative to that value's norm."""
        distances = {}
        for name, (start, start_norm) in self.starts.items():
            now = self.params[name].numpy().astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):  # a weight that starts at 0: inf (or nan if it stays)
                distances[name] = float(np.linalg.norm(now - start) / start_norm)
        return distances

    def params_arrays(self) -> dict[str, np.ndarray]:
        """The trained tensors, and batch norm's moving statistics."""
        return {name: variable.numpy() for name, variable in {**self.params, **self.moving}.items()}


def train_epochs(
    trainer: Trainer,
    should_stop: Callable[[], bool] = lambda: False,
    call: Callable = lambda function, *args: function(*args),
):
    """Yield each epoch's result; stop early after a non-finite step (when the
    config says so) or when should_stop() turns true between chunks. `call`
    runs each chunk (the CLI runs it off the main thread)."""
    for epoch in range(trainer.config.epochs):
        if should_stop():
            return
        result = call(trainer.run_epoch, epoch)
        yield result
        if not result.finished:
            return
