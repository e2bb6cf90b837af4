"""A picture of an OpenFace-style CSV: every AU over time, head pose and gaze below.

One panel per face (``face_id``): a lane per AU with its intensity (``AUxx_r``, 0-5) as a
line and the frames where it is present (``AUxx_c = 1``) shaded; then the head rotation
(``pose_Rx/Ry/Rz``) and, when the CSV has them, the gaze angles (``gaze_angle_x/y``), both
in degrees. Frames without a face (``success = 0``) are gaps. The time axis is the
timestamp in seconds for a video, else the frame number.

PNG through matplotlib, HTML through plotly (one self-contained file, plotly.js inline);
both are the optional extra ``pyfaceau[plot]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, PyFaceAUError
from ..validation import require_numeric_columns

__all__ = ["AU_DESCRIPTIONS", "AUTrack", "load_tracks", "plot_csv", "plot_png", "plot_html"]

#: Short names of the AUs (OpenFace's ``Visualizer.cpp``, ``AUS_DESCRIPTION``).
AU_DESCRIPTIONS = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer",
    "AU05": "upper lid raiser", "AU06": "cheek raiser", "AU07": "lid tightener",
    "AU09": "nose wrinkler", "AU10": "upper lip raiser", "AU12": "lip corner puller",
    "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser",
    "AU20": "lip stretcher", "AU23": "lip tightener", "AU25": "lips part",
    "AU26": "jaw drop", "AU28": "lip suck", "AU45": "blink",
}
#: OpenFace's intensity scale (``FaceAnalyser``: predictions clipped to [0, 5]).
AU_INTENSITY_MAX = 5.0
#: Fraction of a lane the intensity line may use (the rest separates lanes).
_LANE_FILL = 0.85
_PRESENCE_RGB = (255, 183, 77)  # light orange
_INTENSITY_RGB = (21, 101, 192)  # dark blue
_POSE_COLOURS = ("#c62828", "#2e7d32", "#1565c0")
_GAZE_COLOURS = ("#6a1b9a", "#ef6c00")


@dataclass
class AUTrack:
    """One face's series, ready to draw.

    Attributes
    ----------
    face_id : the face's id.
    time : ``(n,)`` seconds (or frame numbers, see ``time_label``).
    time_label : axis label.
    au_names : lane names, top to bottom (``AU01`` ...).
    intensity : ``(n_aus, n)`` 0-5, NaN where absent or not successful.
    presence : ``(n_aus, n)`` 0/1, NaN where absent or not successful.
    pose_deg : ``(3, n)`` ``Rx, Ry, Rz`` in degrees, NaN where not successful; or None.
    gaze_deg : ``(2, n)`` ``gaze_angle_x, gaze_angle_y`` in degrees; or None.
    """

    face_id: int
    time: np.ndarray
    time_label: str
    au_names: list[str]
    intensity: np.ndarray
    presence: np.ndarray
    pose_deg: np.ndarray | None
    gaze_deg: np.ndarray | None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty, not a CSV") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def load_tracks(csv: str | os.PathLike[str] | pd.DataFrame) -> list[AUTrack]:
    """Read an OpenFace or pyfaceau CSV into one :class:`AUTrack` per face.

    Parameters
    ----------
    csv : the CSV file, or a DataFrame with its columns.

    Raises
    ------
    InputError
        The file cannot be read, has no rows or no AU column.
    """
    name = "the table" if isinstance(csv, pd.DataFrame) else str(csv)
    df = csv.copy() if isinstance(csv, pd.DataFrame) else _read_csv(Path(csv))
    if df.empty:
        raise InputError(f"{name}: no rows to plot")
    aus = sorted({c[:4] for c in df.columns if c.startswith("AU") and c[4:] in ("_r", "_c")})
    if not aus:
        raise InputError(f"{name}: no AU columns (AUxx_r / AUxx_c): not an OpenFace CSV")
    used = [c for c in df.columns if c in ("frame", "timestamp", "success", "face_id", "face")
            or c[:4] in aus or c.startswith(("pose_R", "gaze_angle_"))]
    require_numeric_columns(df, used, name)
    if "success" in df and not (df["success"] > 0).any():
        raise InputError(f"{name}: no frame has a face (success is 0 on every row): "
                         "nothing to plot")
    ids = df["face_id"] if "face_id" in df else pd.Series(0, index=df.index)
    if "face" in df and "face_id" not in df:  # FaceLandmarkImg's layout
        ids = df["face"]
    tracks = []
    for face_id, part in df.groupby(ids.to_numpy(), sort=True):
        part = part.sort_values("frame") if "frame" in part else part
        ok = part["success"].to_numpy(float) > 0 if "success" in part else np.ones(len(part), bool)
        grid, slots, label = _time_axis(
            len(part),
            part["frame"].to_numpy(float) if "frame" in part else None,
            part["timestamp"].to_numpy(float) if "timestamp" in part else None,
        )

        def series(col: str) -> np.ndarray:
            if col not in part:
                return np.full(len(part), np.nan)
            v = part[col].to_numpy(float).copy()
            v[~ok] = np.nan
            return v


        def on_grid(values: np.ndarray) -> np.ndarray:
            # Frames without a row for this face (a face lost and found) become gaps.
            out = np.full(values.shape[:-1] + (len(grid),), np.nan)
            out[..., slots] = values
            return out

        intensity = on_grid(np.stack([series(f"{a}_r") for a in aus]))
        presence = on_grid(np.stack([series(f"{a}_c") for a in aus]))
        pose = None
        if all(f"pose_R{c}" in part for c in "xyz"):
            pose = on_grid(np.degrees(np.stack([series(f"pose_R{c}") for c in "xyz"])))
        gaze = None
        if all(f"gaze_angle_{c}" in part for c in "xy"):
            gaze = on_grid(np.degrees(np.stack([series(f"gaze_angle_{c}") for c in "xy"])))
        tracks.append(AUTrack(int(face_id), grid, label, list(aus), intensity, presence, pose, gaze))
    return tracks


def _time_axis(
    n: int, frame: np.ndarray | None, timestamp: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """The plot's regular axis for ``n`` rows, each row's slot on it, and the axis label.

    Frame numbers, when the rows have distinct whole ones, give the slots exactly (a
    frame without a row is a gap); their times run in one step from the first to the last
    row with a timestamp (a row whose timestamp is not a number keeps its frame's place).
    OpenFace prints timestamps with 3 decimals (0.033 s at 30 frames/s), too coarse to
    find the frame step from neighbouring rows. Without frame numbers: the timestamps (see
    :func:`_regular_grid`), else the row order.
    """
    finite_ts = None if timestamp is None else np.isfinite(timestamp)
    has_times = finite_ts is not None and np.unique(timestamp[finite_ts]).size > 1
    if (frame is not None and np.all(np.isfinite(frame)) and np.all(frame == np.round(frame))
            and np.all(np.abs(frame) < 2**53)):  # whole numbers that fit a frame count
        f = frame.astype(np.int64)
        # the usual step between rows (2 for a CSV of every other frame): a frame missing
        # from that rhythm is a gap
        steps = np.diff(np.unique(f))
        step = int(np.median(steps)) if steps.size else 1
        offsets = f - f.min()
        slots = offsets // max(step, 1)
        span = int(slots.max()) + 1
        if (np.unique(f).size == n and np.all(offsets % max(step, 1) == 0)
                and span <= 4 * n + 100):
            frames = f.min() + step * np.arange(span)
            known = np.flatnonzero(finite_ts) if has_times else np.array([], int)
            if known.size > 1 and f[known].max() > f[known].min():
                # one step through the first and last timestamped rows: a regular axis,
                # exact at both ends
                first, last = known[np.argmin(f[known])], known[np.argmax(f[known])]
                step = (timestamp[last] - timestamp[first]) / (f[last] - f[first])
                return timestamp[first] + (frames - f[first]) * step, slots, "time (s)"
            return frames.astype(float), slots, "frame"
    if has_times and finite_ts.all():
        grid, slots = _regular_grid(timestamp)
        return grid, slots, "time (s)"
    return np.arange(n, dtype=float), np.arange(n), "row"


def _regular_grid(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A regular time axis through ``time`` (step: the median spacing) and each sample's
    slot on it; ``time`` itself when it is too irregular for one."""
    steps = np.diff(np.unique(time))
    if len(steps) == 0 or not np.all(np.isfinite(time)):
        return time, np.arange(len(time))
    step = float(np.median(steps))
    slots = np.rint((time - time[0]) / step).astype(np.int64)
    n = int(slots.max()) + 1
    if slots.min() < 0 or len(np.unique(slots)) != len(slots) or n > 4 * len(time) + 100:
        return time, np.arange(len(time))
    return time[0] + step * np.arange(n), slots


def _lane_label(au: str) -> str:
    return f"{au} {AU_DESCRIPTIONS.get(au, '')}".strip()


def _import(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise PyFaceAUError(
            f"plotting needs {module.split('.')[0]}: pip install 'pyfaceau[plot]'"
        ) from exc


def plot_png(tracks: list[AUTrack], path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw ``tracks`` into a PNG with matplotlib (no display needed).

    Returns
    -------
    The PNG's path.
    """
    matplotlib = _import("matplotlib")
    matplotlib.use("Agg", force=True)
    plt = _import("matplotlib.pyplot")
    from matplotlib.colors import ListedColormap

    presence_cmap = ListedColormap(
        [(1, 1, 1, 0), tuple(c / 255 for c in _PRESENCE_RGB) + (0.55,)]
    ).with_extremes(bad=(1, 1, 1, 0))
    t_min = min(float(t.time[0]) for t in tracks)
    t_max = max(float(t.time[-1]) for t in tracks)
    rows: list[float] = []
    for t in tracks:
        rows += [len(t.au_names) * 0.36]
        rows += [1.6] * ((t.pose_deg is not None) + (t.gaze_deg is not None))
    fig_h = sum(rows) + 0.9 * len(tracks) + 0.6
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(13, fig_h), dpi=110, squeeze=False,
        gridspec_kw={"height_ratios": rows, "hspace": 0.3},
    )
    axes = list(axes[:, 0])
    for t in tracks:
        ax = axes.pop(0)
        n = len(t.au_names)
        lanes = np.arange(n)[::-1]  # AU01 on top
        x = t.time
        edges = _edges(x)
        presence = np.ma.masked_invalid(t.presence)
        ax.pcolormesh(edges, np.arange(n + 1)[::-1] - 0.5, presence, cmap=presence_cmap,
                      vmin=0, vmax=1, shading="flat", rasterized=True)
        colour = tuple(c / 255 for c in _INTENSITY_RGB)
        for lane, values in zip(lanes, t.intensity):
            base = lane - 0.5 + 0.05
            top = base + _LANE_FILL * values / AU_INTENSITY_MAX
            ax.fill_between(x, base, top, color=colour, alpha=0.35, lw=0)
            ax.plot(x, top, color=colour, lw=0.9)
        for lane in lanes:
            ax.axhline(lane - 0.5, color="0.85", lw=0.5)
        ax.set_yticks(lanes, [_lane_label(a) for a in t.au_names], fontsize=8)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_xlim(min(edges[0], t_min), max(edges[-1], t_max))
        ax.set_title(
            f"{title + ': ' if title else ''}face {t.face_id}: AU intensity (line, 0-5 per "
            f"lane), presence shaded", fontsize=10, loc="left",
        )
        ax.tick_params(axis="x", labelsize=8)
        for series, names, colours, what in (
            (t.pose_deg, ("pitch Rx", "yaw Ry", "roll Rz"), _POSE_COLOURS, "head rotation (deg)"),
            (t.gaze_deg, ("gaze x", "gaze y"), _GAZE_COLOURS, "gaze angle (deg)"),
        ):
            if series is None:
                continue
            sub = axes.pop(0)
            for values, name, colour in zip(series, names, colours):
                sub.plot(x, values, color=colour, lw=1.0, label=name)
            sub.set_xlim(min(edges[0], t_min), max(edges[-1], t_max))
            sub.set_ylabel(what, fontsize=8)
            sub.tick_params(labelsize=8)
            sub.grid(alpha=0.3)
            sub.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
        (sub if (t.pose_deg is not None or t.gaze_deg is not None) else ax).set_xlabel(
            t.time_label, fontsize=9
        )
    out = Path(path)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around sample times (for the shaded presence)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def plot_html(tracks: list[AUTrack], path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw ``tracks`` into one self-contained interactive HTML file with plotly.

    Returns
    -------
    The HTML file's path (plotly.js is inside it: it opens without a network).
    """
    go = _import("plotly.graph_objects")
    subplots = _import("plotly.subplots")

    heights: list[float] = []
    titles: list[str] = []
    for t in tracks:
        heights.append(len(t.au_names) * 0.32)
        titles.append(f"face {t.face_id}: AU intensity (line, 0-5 per lane), presence shaded")
        if t.pose_deg is not None:
            heights.append(1.6)
            titles.append(f"face {t.face_id}: head rotation (deg)")
        if t.gaze_deg is not None:
            heights.append(1.6)
            titles.append(f"face {t.face_id}: gaze angle (deg)")
    fig = subplots.make_subplots(
        rows=len(heights), cols=1, shared_xaxes=False, row_heights=heights,
        vertical_spacing=0.08 / max(1, len(heights) / 3), subplot_titles=titles,
    )
    row = 1
    pr, pg, pb = _PRESENCE_RGB
    for t in tracks:
        n = len(t.au_names)
        lanes = np.arange(n)[::-1]
        fig.add_trace(
            go.Heatmap(
                x=t.time, y=lanes, z=np.where(t.presence > 0, 1.0, np.nan), zmin=0, zmax=1,
                colorscale=[[0, "rgba(255,255,255,0)"], [1, f"rgba({pr},{pg},{pb},0.55)"]],
                showscale=False, hoverinfo="skip", name="presence",
            ),
            row=row, col=1,
        )
        ir, ig, ib = _INTENSITY_RGB
        for lane, au, values in zip(lanes, t.au_names, t.intensity):
            base = lane - 0.5 + 0.05
            fig.add_trace(  # the lane's baseline, for the filled area
                go.Scatter(x=t.time, y=np.where(np.isnan(values), np.nan, base), mode="lines",
                           line={"width": 0}, hoverinfo="skip", showlegend=False),
                row=row, col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=t.time, y=base + _LANE_FILL * values / AU_INTENSITY_MAX,
                    customdata=values, mode="lines", name=f"face {t.face_id} {au}",
                    line={"width": 1.2, "color": f"rgb({ir},{ig},{ib})"},
                    fill="tonexty", fillcolor=f"rgba({ir},{ig},{ib},0.3)",
                    hovertemplate=f"{_lane_label(au)}: %{{customdata:.2f}}<extra></extra>",
                    showlegend=False,
                ),
                row=row, col=1,
            )
        fig.update_yaxes(tickvals=list(lanes), ticktext=[_lane_label(a) for a in t.au_names],
                         range=[-0.5, n - 0.5], showgrid=False, row=row, col=1)
        row += 1
        for series, names, colours, unit in (
            (t.pose_deg, ("pitch Rx", "yaw Ry", "roll Rz"), _POSE_COLOURS, "deg"),
            (t.gaze_deg, ("gaze x", "gaze y"), _GAZE_COLOURS, "deg"),
        ):
            if series is None:
                continue
            for values, name, colour in zip(series, names, colours):
                fig.add_trace(
                    go.Scatter(x=t.time, y=values, mode="lines", name=f"face {t.face_id} {name}",
                               line={"width": 1.2, "color": colour}),
                    row=row, col=1,
                )
            fig.update_yaxes(title_text=unit, row=row, col=1)
            row += 1
        fig.update_xaxes(title_text=t.time_label, row=row - 1, col=1)  # below the face's last plot
    fig.update_layout(
        title=title or None, height=int(90 * sum(heights) + 120 * len(tracks) + 80),
        template="plotly_white", margin={"l": 190, "r": 30, "t": 70, "b": 40},
        legend={"orientation": "h"},
    )
    out = Path(path)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return out


def plot_csv(
    csv: str | os.PathLike[str], output: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Plot a CSV into ``output``: ``.png`` (matplotlib) or ``.html`` (plotly).

    Parameters
    ----------
    csv : an OpenFace or pyfaceau CSV (one face or several, ``face_id``).
    output : the picture; its extension chooses the format.
    title : shown above the plots; default the CSV's name.

    Raises
    ------
    InputError
        Unknown extension, or a CSV that cannot be plotted.
    PyFaceAUError
        The plotting library is not installed (``pip install 'pyfaceau[plot]'``).
    """
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise InputError(f"{out}: the picture must end in .png or .html")
    tracks = load_tracks(csv)
    name = Path(csv).name if title is None else title
    if suffix == ".png":
        return plot_png(tracks, out, name)
    return plot_html(tracks, out, name)
