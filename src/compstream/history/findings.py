"""What the verifier reports: one finding per broken thing (chain, digest, replay)."""

from __future__ import annotations

from dataclasses import dataclass

# Finding.engineer_id for a finding about the whole store (a period digest).
ALL_ENGINEERS = "*"


@dataclass(frozen=True, order=True)
class Finding:
    engineer_id: str
    seq: int  # 0: not about one posting (a digest, an unreadable event)
    kind: str
    detail: str

    def to_dict(self) -> dict:
        """JSON form: null where the finding is not about one engineer / posting."""
        return {
            "engineer_id": None if self.engineer_id == ALL_ENGINEERS else self.engineer_id,
            "seq": self.seq or None,
            "kind": self.kind,
            "detail": self.detail,
        }
