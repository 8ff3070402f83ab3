"""A transcript's segments as subtitles: SubRip (.srt) and WebVTT (.vtt)."""

from voxline.models.whisper import Segment


def _clock(secs: float, decimal: str) -> str:
    millis = round(secs * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{millis:03d}"


def srt(segments: list[Segment]) -> str:
    """SubRip: numbered cues, comma before the milliseconds."""
    return "".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n"
                   for i, s in enumerate(segments, start=1))


def vtt(segments: list[Segment]) -> str:
    """WebVTT: a header, then cues with a dot before the milliseconds."""
    return "WEBVTT\n\n" + "".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n"
                                  for s in segments)
