"""The training policy's state machine (`vae_core.trainer_state`): LR plateau, early stopping, the best loss, and
their JSON round trip. Framework-free; torch's ReduceLROnPlateau serves as an independent check of the rule."""
import pytest

from vae_core import TrainConfig
from vae_core.train.state import TrainerState


def _scripted(losses, config):
    """The LR each epoch trains with, the epoch early stopping fired (or None), and the final state."""
    state = TrainerState(config.learning_rate, "val_loss")
    lrs, stopped = [], None
    for epoch, loss in enumerate(losses, 1):
        lrs.append(state.lr)
        state.update(epoch, loss, config)
        if state.stopped_early:
            stopped = epoch
            break
    return lrs, stopped, state


def test_plateau_halves_the_lr_after_patience_epochs_without_improvement():
    config = TrainConfig(learning_rate=1.0, reduce_lr_on_plateau=True, lr_plateau_patience=2, lr_plateau_factor=0.5)
    # Improvements at epochs 1, 2 and 6 (strictly lower only). Epochs 3-5 are 3 bad epochs (> patience 2): the
    # LR halves from epoch 6 on; epochs 7-9 likewise halve it again for epoch 10.
    lrs, stopped, _ = _scripted([5.0, 4.0, 4.0, 4.5, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0], config)
    assert lrs == [1.0] * 5 + [0.5] * 4 + [0.25]
    assert stopped is None
    off = _scripted([5.0, 4.0, 4.0, 4.5, 4.0, 3.0], config.replace(reduce_lr_on_plateau=False))[0]
    assert off == [1.0] * 6


def test_any_strictly_lower_loss_is_an_improvement_for_the_plateau_too():
    # threshold 0 (torch's default would need 1e-4 relative): the plateau, early stopping and best file share
    # one rule.
    config = TrainConfig(learning_rate=1.0, reduce_lr_on_plateau=True, lr_plateau_patience=0)
    lrs, _, state = _scripted([10.0, 9.9995, 9.9995, 9.0], config)
    assert lrs == [1.0, 1.0, 1.0, 0.5]
    assert state.best_loss == 9.0 and state.best_epoch == 4


def test_early_stopping_fires_after_patience_bad_epochs():
    config = TrainConfig(early_stopping=True, early_stopping_patience=3)
    _, stopped, state = _scripted([5.0, 4.0, 4.1, 4.0, 3.9, 4.5, 4.4, 3.95, 3.0], config)
    assert stopped == 8 and state.best_epoch == 5 and state.best_loss == 3.9


def test_state_round_trips_through_json():
    import json

    config = TrainConfig(learning_rate=1.0, reduce_lr_on_plateau=True, lr_plateau_patience=2, early_stopping=True,
                         early_stopping_patience=5)
    losses = [5.0, 4.0, 4.2, 4.1, 4.3, 4.4, 3.0]
    whole = _scripted(losses, config)
    head_lrs, _, head = _scripted(losses[:4], config)
    saved = json.loads(json.dumps(head.to_dict(), allow_nan=False))
    assert saved["plateau_bad_epochs"] == 2 and saved["early_stopping_bad_epochs"] == 2
    state = TrainerState.from_checkpoint(saved, {}, config, "val_loss")
    lrs = head_lrs[:]
    for epoch, loss in enumerate(losses[4:], 5):
        lrs.append(state.lr)
        state.update(epoch, loss, config)
    assert lrs == whole[0] and state.to_dict() == whole[2].to_dict()


def test_plateau_and_early_stopping_follow_torch_semantics():
    """TrainerState against torch.optim.lr_scheduler.ReduceLROnPlateau (strict improvement: threshold 0, the
    rule both backends use; the LR drops after more than `patience` bad epochs) and the seed's early stopping
    (strict improvement, stop once `patience` epochs in a row did not improve)."""
    torch = pytest.importorskip("torch")
    config = TrainConfig(reduce_lr_on_plateau=True, lr_plateau_factor=0.5, lr_plateau_patience=2,
                         early_stopping=True, early_stopping_patience=4)
    losses = [10.0, 9.0, 9.0, 8.9995, 9.5, 9.1, 9.2, 8.0, 8.0, 8.0, 8.0, 8.0, 7.9]
    state = TrainerState(lr=1e-3)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2, threshold=0.0,
                                                       threshold_mode="abs")
    best, wait, lrs = float("inf"), 0, []
    for epoch, value in enumerate(losses, 1):
        improved = state.update(epoch, value, config)
        sched.step(value)
        assert state.lr == opt.param_groups[0]["lr"] and state.plateau_bad_epochs == sched.num_bad_epochs
        assert improved == (value < best)
        best, wait = (value, 0) if value < best else (best, wait + 1)
        assert state.stopped_early == (wait >= 4) and state.best_loss == best
        lrs.append(state.lr)
        if state.stopped_early:
            break
    assert len(set(lrs)) > 1 and state.stopped_early and state.best_epoch == 8
    resumed = TrainerState.from_checkpoint(state.to_dict(), {}, config, "val_loss")
    assert resumed == state
    with pytest.warns(UserWarning, match="replaying"):  # a foreign trainer_state: rebuilt from the history
        replayed = TrainerState.from_checkpoint({"lr": 5e-4}, {"val_loss": losses[:epoch]}, config, "val_loss")
    assert replayed == state


@pytest.mark.parametrize("position, expected", [
    ({"epoch": 2, "step": 3, "n_examples": 100, "batch_size": 8, "losses": [[1.0, 1.0, 0.0]] * 2, "seconds": 1.0},
     "does not describe a step of epoch 2 with its batch losses"),  # 3 steps, 2 rows of losses
    ({"epoch": 3, "step": 1, "n_examples": 100, "batch_size": 8, "losses": [[1.0, 1.0, 0.0]], "seconds": 1.0},
     "does not describe a step of epoch 2"),  # another epoch
    ({"epoch": 2, "step": 1, "n_examples": 100, "batch_size": 8, "losses": [["x", 1.0, 0.0]], "seconds": 1.0},
     "does not describe a step"),  # not numbers
    ({"epoch": 2, "step": 13, "n_examples": 100, "batch_size": 8, "losses": [[1.0, 1.0, 0.0]] * 13, "seconds": 1.0},
     "past the epoch's 13 steps"),
    ([1, 2], "does not describe a step"),
])
def test_a_damaged_step_position_is_a_checkpoint_error(position, expected):
    from vae_core import CheckpointError
    from vae_core.train.loop import check_position

    with pytest.raises(CheckpointError, match=expected):
        check_position(position, 1, 100, 8, "ck.safetensors")
    good = {"epoch": 2, "step": 2, "n_examples": 100, "batch_size": 8, "losses": [[1.0, 1.0, 0.0]] * 2, "seconds": 1}
    assert check_position(good, 1, 100, 8, "ck.safetensors") == good
