"""The recording hardware and the lab, drawn at random: domain randomisation for training.

A generated night is physiology at the generator's own electrodes, amplifier and rate. Real
recordings differ in everything that is not physiology: which electrode feeds the central EEG
and against which reference (C3, C4, Cz, Pz, Fpz against a mastoid, an earlobe, linked ears or
another scalp electrode), the amplifier's gain and offset, its hardware high- and low-pass
filters, the sampling rate (50-512 Hz), mains interference and its harmonics, coloured noise,
movement and sweat artefacts, flat stretches where a lead came off. A model that is to stage
real people must see all of these vary independently of the stage, so that nothing but the
physiology predicts it (issue 12, point 3).

``draw_acquisition(rng)`` draws one night's hardware; ``apply_acquisition(signals, fs, acq, rng)``
records the generated roles through it and returns the signals as the recording would hold them
(still one array per SleepVLM role: the renderer's input). Pure numpy/scipy; no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal

# Sampling rates seen in PSG files (DREAMS 50/100/200, Sleep-EDF 100, MASS 256, SHHS 125,
# many labs 200/250/256/500/512).
SAMPLING_RATES = (50.0, 100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0, 512.0)
RATE_WEIGHTS = (0.06, 0.2, 0.06, 0.1, 0.18, 0.1, 0.18, 0.06, 0.06)

# What may feed the central-EEG role, as real files label it, and how that electrode's signal
# is composed from the generator's leads (F4, C4, O2 against a mastoid): a vertex lead carries
# more of the frontal (K complexes, slow waves) and less alpha, a parietal lead more occipital
# alpha, an ipsilateral or nearby reference shrinks everything (shorter inter-electrode
# distance), a bipolar scalp pair cancels what both electrodes share.
#   name: (weights of F4, C4, O2 at the active electrode, amplitude factor of the reference)
CENTRAL_SITES: dict[str, tuple[tuple[float, float, float], float]] = {
    "C4-M1": ((0.0, 1.0, 0.0), 1.0),
    "C3-M2": ((0.05, 0.95, 0.0), 1.0),
    "C4-A1": ((0.0, 1.0, 0.0), 0.95),
    "C3-A2": ((0.05, 0.95, 0.0), 0.95),
    "C3-A1": ((0.05, 0.95, 0.0), 0.75),     # ipsilateral ear: DREAMS excerpt 1
    "Cz-A1": ((0.35, 0.75, 0.0), 0.9),      # DREAMS excerpts 2-4
    "Cz-M2": ((0.35, 0.75, 0.0), 0.95),
    "C4-LE": ((0.0, 1.0, 0.0), 0.9),        # linked ears
    "Pz-A1": ((0.0, 0.55, 0.45), 0.9),
    "C3-Cz": ((0.0, 0.6, 0.0), 0.45),       # bipolar: small, shared activity cancelled
}
CENTRAL_WEIGHTS = (0.2, 0.12, 0.1, 0.1, 0.12, 0.14, 0.06, 0.06, 0.05, 0.05)


@dataclass(frozen=True)
class Acquisition:
    """One night's recording chain (what ``apply_acquisition`` does to the generated roles).

    Attributes
    ----------
    fs : float
        The recording's sampling rate (Hz).
    central_site : str
        Which derivation feeds the central-EEG role (a key of ``CENTRAL_SITES``).
    gain : dict
        Per role amplitude factor (amplifier calibration, electrode impedance, head size).
    highpass_hz, lowpass_hz : float
        The amplifier's hardware filters (first-order high-pass, second-order low-pass).
    offset_uv : float
        DC offset of every lead (removed by the renderer's band-pass, but real files carry it).
    mains_hz, mains_uv, harmonics : float
        Mains interference, its amplitude and the relative amplitude of its 3rd harmonic.
    pink_uv : float
        Extra 1/f amplifier and environment noise (RMS).
    movement_per_h, sweat_per_h, dropout_per_h : float
        Rates of movement bursts, sweat sway and lead-off flat stretches.
    """

    fs: float
    central_site: str
    gain: dict = field(default_factory=dict)
    highpass_hz: float = 0.1
    lowpass_hz: float = 100.0
    offset_uv: float = 0.0
    mains_hz: float = 50.0
    mains_uv: float = 0.0
    harmonics: float = 0.0
    pink_uv: float = 0.0
    movement_per_h: float = 0.0
    sweat_per_h: float = 0.0
    dropout_per_h: float = 0.0

    def describe(self) -> str:
        """One line for logs and data manifests."""
        return (f"{self.fs:g} Hz, central {self.central_site}, HP {self.highpass_hz:.2f} Hz, "
                f"LP {self.lowpass_hz:.0f} Hz, mains {self.mains_hz:g} Hz {self.mains_uv:.1f} uV")


def draw_acquisition(rng: np.random.Generator, roles: tuple[str, ...] = ("F4-M1", "C4-M1", "O2-M1",
                                                                        "LOC", "ROC", "CHIN")
                     ) -> Acquisition:
    """Draw one night's recording chain.

    Parameters
    ----------
    rng : numpy.random.Generator
        The night's random generator.
    roles : tuple of str
        The roles that will be recorded (each gets its own gain).

    Returns
    -------
    Acquisition
    """
    fs = float(rng.choice(SAMPLING_RATES, p=np.asarray(RATE_WEIGHTS) / sum(RATE_WEIGHTS)))
    site = str(rng.choice(list(CENTRAL_SITES), p=np.asarray(CENTRAL_WEIGHTS) / sum(CENTRAL_WEIGHTS)))
    head = float(np.exp(rng.normal(0.0, 0.25)))      # one factor for the whole head
    gain = {r: head * float(np.exp(rng.normal(0.0, 0.12))) for r in roles}
    return Acquisition(
        fs=fs, central_site=site, gain=gain,
        highpass_hz=float(np.exp(rng.uniform(np.log(0.03), np.log(0.5)))),
        lowpass_hz=float(min(rng.choice([35.0, 45.0, 70.0, 100.0, 150.0]), 0.45 * fs)),
        offset_uv=float(rng.normal(0.0, 150.0)),
        mains_hz=float(rng.choice([50.0, 60.0])),
        mains_uv=float(rng.choice([0.0, rng.uniform(0.5, 4.0), rng.uniform(4.0, 25.0)], p=[0.3, 0.5, 0.2])),
        harmonics=float(rng.uniform(0.0, 0.4)),
        pink_uv=float(rng.uniform(0.0, 4.0)),
        movement_per_h=float(rng.uniform(0.0, 8.0)),
        sweat_per_h=float(rng.choice([0.0, rng.uniform(0.5, 3.0)], p=[0.6, 0.4])),
        dropout_per_h=float(rng.choice([0.0, rng.uniform(0.1, 0.6)], p=[0.8, 0.2])),
    )


def central_derivation(signals: dict[str, np.ndarray], site: str, rng: np.random.Generator) -> np.ndarray:
    """The central-EEG role as the derivation ``site`` would record it, from the generated
    F4/C4/O2 leads (see ``CENTRAL_SITES``), with a little electrode-own noise."""
    (wf, wc, wo), ref = CENTRAL_SITES[site]
    x = wc * signals["C4-M1"].astype(np.float32)
    if wf and "F4-M1" in signals:
        x = x + wf * signals["F4-M1"]
    if wo and "O2-M1" in signals:
        x = x + wo * signals["O2-M1"]
    return (ref * x).astype(np.float32)


def _resample(x: np.ndarray, fs: float, fs_out: float) -> np.ndarray:
    """Resample as an acquisition system sampling at ``fs_out`` would (anti-aliased)."""
    if abs(fs - fs_out) < 1e-9:
        return x

    ratio = Fraction(fs_out / fs).limit_denominator(64)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def _events(rng: np.random.Generator, per_h: float, duration_s: float) -> np.ndarray:
    return rng.uniform(0.0, duration_s, size=rng.poisson(per_h * duration_s / 3600.0))


def apply_acquisition(signals: dict[str, np.ndarray], fs: float, acq: Acquisition,
                      rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float]:
    """Record generated roles through ``acq``.

    Parameters
    ----------
    signals : dict
        Role -> microvolts at the generator's rate ``fs`` (the generator's six roles, or a
        subset; the central role is re-derived from F4/C4/O2 as ``acq.central_site`` reads it).
    fs : float
        The generator's sampling rate; it must be at least ``acq.fs`` (record at a lower or
        equal rate: generate at 256 or 512 Hz).
    acq : Acquisition
        The recording chain.
    rng : numpy.random.Generator
        Noise and artefact draws.

    Returns
    -------
    (dict, float)
        Role -> microvolts (float32) at ``acq.fs``, and ``acq.fs``.
    """
    n = next(iter(signals.values())).size
    duration = n / fs
    t = np.arange(n, dtype=np.float64) / fs
    hp = signal.butter(1, acq.highpass_hz, btype="highpass", fs=fs, output="sos")
    lp = signal.butter(2, min(acq.lowpass_hz, 0.45 * fs), btype="lowpass", fs=fs, output="sos")
    mains = np.sin(2 * np.pi * acq.mains_hz * t + rng.uniform(0, 2 * np.pi))
    if 3 * acq.mains_hz < 0.5 * fs:
        mains = mains + acq.harmonics * np.sin(2 * np.pi * 3 * acq.mains_hz * t)
    mains = (acq.mains_uv * mains).astype(np.float32)
    moves = _events(rng, acq.movement_per_h, duration)
    sweats = _events(rng, acq.sweat_per_h, duration)
    drops = _events(rng, acq.dropout_per_h, duration)
    out: dict[str, np.ndarray] = {}
    for role, x in signals.items():
        y = central_derivation(signals, acq.central_site, rng) if role == "C4-M1" else x.astype(np.float32)
        y = y * acq.gain.get(role, 1.0)
        if acq.pink_uv > 0:
            spec = np.fft.rfft(rng.standard_normal(n))
            f = np.fft.rfftfreq(n, 1.0 / fs)
            spec[1:] /= np.sqrt(f[1:])
            spec[0] = 0
            pink = np.fft.irfft(spec, n)
            y = y + (acq.pink_uv * pink / (pink.std() + 1e-12)).astype(np.float32)
        y = y + mains * (2.0 if role == "CHIN" else 1.0) * rng.uniform(0.5, 1.5)
        for s in moves:           # body movement: broadband, high-amplitude, 1-8 s, all leads
            a, b = int(s * fs), int(min(n, (s + rng.uniform(1.0, 8.0)) * fs))
            if b - a > 4:
                burst = rng.standard_normal(b - a).astype(np.float32) * rng.uniform(30, 200)
                burst = signal.sosfilt(signal.butter(2, [0.5, min(60.0, 0.45 * fs)], btype="bandpass",
                                                     fs=fs, output="sos"), burst).astype(np.float32)
                y[a:b] += burst * np.hanning(b - a).astype(np.float32) ** 0.3
        if role != "CHIN":
            for s in sweats:      # sweat: slow large sway over tens of seconds
                a, b = int(s * fs), int(min(n, (s + rng.uniform(20.0, 120.0)) * fs))
                if b - a > 4:
                    sway = np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(b - a) / fs)
                    y[a:b] += (rng.uniform(40, 150) * sway * np.hanning(b - a)).astype(np.float32)
        y = signal.sosfilt(lp, signal.sosfilt(hp, y)).astype(np.float32) + acq.offset_uv
        for s in drops:           # a lead off: the amplifier's flat line with a little noise
            if rng.random() < 0.5:
                a, b = int(s * fs), int(min(n, (s + rng.uniform(2.0, 30.0)) * fs))
                y[a:b] = acq.offset_uv + rng.standard_normal(b - a).astype(np.float32) * 0.5
        out[role] = _resample(y, fs, acq.fs)
    return out, acq.fs
