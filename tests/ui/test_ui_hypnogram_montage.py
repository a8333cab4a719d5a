"""HypnogramView and MontageDialog as widgets on their own (real Qt, offscreen)."""

from datetime import datetime

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from sleepvlm_ws.core.base.stages import EPOCH_SECONDS, Stage
from sleepvlm_ws.core.signals.montage import ROLES, Derivation, Montage
from sleepvlm_ws.ui.hypnogram_view import STAGE_LEVELS, HypnogramView
from sleepvlm_ws.ui.montage_dialog import MISSING, MontageDialog
from sleepvlm_ws.ui.plot_items import clock_text

START = datetime(2024, 3, 1, 22, 30, 0)


def click_epoch(qtbot, view: HypnogramView, epoch: int, button=Qt.MouseButton.LeftButton):
    scene = view.scene_pos_of_epoch(epoch)
    point = view.plot_widget.mapFromScene(scene)
    qtbot.mouseClick(view.plot_widget.viewport(), button, pos=QPoint(point.x(), point.y()))


@pytest.fixture
def hypnogram(qtbot):
    view = HypnogramView()
    qtbot.addWidget(view)
    view.resize(900, 220)
    view.show()
    qtbot.waitExposed(view)
    stages = [Stage.UNSCORED] * 40
    stages[:6] = [Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R, Stage.ARTEFACT]
    view.set_night(stages, START)
    view.set_current(0)
    return view


def segments(view: HypnogramView, stage: Stage) -> list[int]:
    x, y = view.stage_curves[stage].getData()
    assert np.all(y == STAGE_LEVELS[stage])
    return sorted(int(round(a / EPOCH_SECONDS)) for a in x[::2])


def test_levels_put_wake_on_top_and_rem_raised():
    assert STAGE_LEVELS[Stage.W] > STAGE_LEVELS[Stage.R] > STAGE_LEVELS[Stage.N1] \
        > STAGE_LEVELS[Stage.N2] > STAGE_LEVELS[Stage.N3]


def test_each_stage_drawn_in_its_own_curve_and_unscored_is_a_gap(hypnogram):
    for epoch, stage in enumerate([Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.R,
                                   Stage.ARTEFACT]):
        assert segments(hypnogram, stage) == [epoch]
    x, y = hypnogram.step_line.getData()
    assert np.isnan(y[2 * 6:]).all()            # epochs 6.. unscored: no line
    assert y[2 * 4] == STAGE_LEVELS[Stage.R]
    assert hypnogram.axis.tickStrings([0.0, 3600.0], 1, 900) == ["22:30", "23:30"]


def test_clock_labels_without_a_start_time_show_elapsed_time():
    assert clock_text(None, 3725.0) == "01:02:05"
    assert clock_text(START, 3725.0) == "23:32:05"
    assert clock_text(None, 3725.0, with_seconds=False) == "01:02"


def test_one_epoch_change_updates_in_place(hypnogram):
    items_before = list(hypnogram.plot.items)
    curve_before = hypnogram.stage_curves[Stage.N2]
    hypnogram.set_stage(1, Stage.N2)      # N1 -> N2
    hypnogram.set_stage(20, Stage.N2)     # unscored -> N2
    assert segments(hypnogram, Stage.N2) == [1, 2, 20]
    assert segments(hypnogram, Stage.N1) == []
    assert hypnogram.stage_curves[Stage.N2] is curve_before
    assert list(hypnogram.plot.items) == items_before          # no items added or rebuilt
    hypnogram.set_stage(20, Stage.UNSCORED)
    assert segments(hypnogram, Stage.N2) == [1, 2]
    assert hypnogram.stages()[20] is Stage.UNSCORED


def test_click_emits_epoch_and_marker_follows(qtbot, hypnogram):
    with qtbot.waitSignal(hypnogram.epoch_clicked, timeout=2000) as blocker:
        click_epoch(qtbot, hypnogram, 27)
    assert blocker.args == [27]
    hypnogram.set_current(27)
    assert hypnogram.marker.value() == pytest.approx(27.5 * EPOCH_SECONDS)


def test_wheel_zooms_time_axis_only(qtbot, hypnogram):
    (x0, x1), (y0, y1) = hypnogram.viewbox.viewRange()
    viewport = hypnogram.plot_widget.viewport()
    point = hypnogram.plot_widget.mapFromScene(hypnogram.scene_pos_of_epoch(20))
    for _ in range(4):
        event = QWheelEvent(QPointF(point), QPointF(viewport.mapToGlobal(point)), QPoint(0, 0),
                            QPoint(0, 120), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(viewport, event)
    (a, b), (c, d) = hypnogram.viewbox.viewRange()
    assert (b - a) < (x1 - x0) * 0.8          # zoomed in on time
    assert (c, d) == pytest.approx((y0, y1))  # stage axis untouched


LABELS = ["F4", "C4", "O2", "M1", "M2", "E1", "E2", "Chin1", "Chin2"]


def full_montage():
    return Montage({"F4-M1": Derivation("F4", "M1"), "C4-M1": Derivation("C4", "M1"),
                    "O2-M1": Derivation("O2", "M1"), "LOC": Derivation("E1", "M2"),
                    "ROC": Derivation("E2", "M1"), "CHIN": Derivation("Chin1", "Chin2")})


def test_montage_dialog_prefills_and_returns_the_choice(qtbot):
    dialog = MontageDialog(LABELS, full_montage())
    qtbot.addWidget(dialog)
    assert dialog.positive["F4-M1"].currentText() == "F4"
    assert dialog.reference["F4-M1"].currentText() == "M1"
    assert dialog.montage().roles == full_montage().roles
    dialog.set_role("O2-M1", None)
    dialog.set_role("F4-M1", "F4", "M2")
    dialog.set_role("CHIN", "Chin1", None)
    montage = dialog.montage()
    assert montage.roles["O2-M1"] is None and montage.missing == ["O2-M1"]
    assert montage.roles["F4-M1"] == Derivation("F4", "M2")
    assert montage.roles["CHIN"] == Derivation("Chin1", None)
    assert not dialog.reference["O2-M1"].isEnabled()
    assert dialog.positive["O2-M1"].currentText() == MISSING


def test_montage_dialog_refuses_a_channel_referenced_to_itself(qtbot):
    dialog = MontageDialog(LABELS, Montage())
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert all(dialog.positive[r].currentText() == MISSING for r in ROLES)
    assert ok.isEnabled()
    dialog.set_role("C4-M1", "C4", "C4")
    assert not ok.isEnabled() and "C4-M1" in dialog.problem.text()
    dialog.set_role("C4-M1", "C4", "M1")
    assert ok.isEnabled() and dialog.problem.text() == ""


@pytest.fixture
def whole_night(qtbot):
    """An 8-h night (960 epochs) in a 1,200-px plot, six epochs scored, the model's and the
    second opinion's lines over all of it."""
    view = HypnogramView()
    qtbot.addWidget(view)
    view.resize(1200, 220)
    view.show()
    qtbot.waitExposed(view)
    cycle = [Stage.W] * 20 + [Stage.N2] * 80 + [Stage.N3] * 40 + [Stage.R] * 40
    night = (cycle * 6)[:960]
    stages = [Stage.UNSCORED] * 960
    for epoch in SCORED:
        stages[epoch] = Stage.N2
    view.set_night(stages, START)
    view.set_suggestions({e: night[e] for e in range(960)})
    view.set_second_opinion({e: night[(e + 5) % 960] for e in range(960)})
    view.set_current(600)
    QApplication.processEvents()
    return view


SCORED = (3, 4, 5, 200, 201, 500)


def _pixels_of(image, colour: str, centre: QPointF, half: int) -> int:
    from PySide6.QtGui import QColor

    want = QColor(colour).rgb() & 0xFFFFFF
    x0, y0 = int(centre.x()), int(centre.y())
    return sum(1 for x in range(x0 - half, x0 + half + 1) for y in range(y0 - half, y0 + half + 1)
               if 0 <= x < image.width() and 0 <= y < image.height()
               and image.pixel(x, y) & 0xFFFFFF == want)


def test_the_technologists_epochs_are_legible_at_full_night_scale(qtbot, whole_night):
    """Issue 14 item 14: at 8 h an epoch is about one pixel; each scored epoch gets a mark of
    its stage's colour that one can see, drawn over the model's and YASA's lines."""
    from sleepvlm_ws.ui.hypnogram_view import SCORED_MARK_PX, STAGE_COLOURS

    view = whole_night
    assert view.epoch_width_px() < 2
    assert view.scored_marks_shown() == list(SCORED)
    scored_z = view.stage_curves[Stage.N2].zValue()
    assert scored_z > view.suggestion_line.zValue() and scored_z > view.opinion_line.zValue()
    image = view.plot_widget.grab().toImage()
    mark = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(500, STAGE_LEVELS[Stage.N2]))
    seen = _pixels_of(image, STAGE_COLOURS[Stage.N2], QPointF(mark), SCORED_MARK_PX)
    assert seen >= (SCORED_MARK_PX - 2) ** 2      # a square, not a one-pixel dash
    view.plot.setXRange(480 * EPOCH_SECONDS, 520 * EPOCH_SECONDS, padding=0)   # zoomed in: the
    QApplication.processEvents()                                               # curves suffice
    assert view.epoch_width_px() > 4 and view.scored_marks_shown() == []


def test_the_wheel_zooms_about_the_cursor_so_the_epoch_on_screen_stays_in_view(qtbot, whole_night):
    view = whole_night
    viewport = view.plot_widget.viewport()
    cursor_before = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(600)).x()
    point = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(20))   # the mouse far left
    for _ in range(8):
        event = QWheelEvent(QPointF(point), QPointF(viewport.mapToGlobal(point)), QPoint(0, 0),
                            QPoint(0, 120), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(viewport, event)
    low, high = view.viewbox.viewRange()[0]
    assert (high - low) < 200 * EPOCH_SECONDS                   # zoomed in well past an hour
    assert low < 600.5 * EPOCH_SECONDS < high                   # the cursor's epoch in view...
    cursor_after = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(600)).x()
    assert abs(cursor_after - cursor_before) <= 2               # ...where it was on screen


def test_the_wheel_zooms_about_the_mouse_when_the_cursor_is_panned_out_of_view(qtbot, whole_night):
    view = whole_night
    view.plot.setXRange(0, 300 * EPOCH_SECONDS, padding=0)     # the cursor (epoch 600) is not shown
    QApplication.processEvents()
    viewport = view.plot_widget.viewport()
    point = view.plot_widget.mapFromScene(view.scene_pos_of_epoch(100))
    under_mouse = view.viewbox.mapSceneToView(view.plot_widget.mapToScene(point)).x()
    for _ in range(4):
        event = QWheelEvent(QPointF(point), QPointF(viewport.mapToGlobal(point)), QPoint(0, 0),
                            QPoint(0, 120), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(viewport, event)
    low, high = view.viewbox.viewRange()[0]
    assert high - low < 250 * EPOCH_SECONDS and high < 600 * EPOCH_SECONDS   # zoomed, not pulled to 600
    after = view.viewbox.mapSceneToView(view.plot_widget.mapToScene(point)).x()
    assert abs(after - under_mouse) < EPOCH_SECONDS              # the epoch under the mouse stayed
