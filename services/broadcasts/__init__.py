"""Broadcasts to the villages' loudspeakers and e-boards (SPEC §9, Thông tư 39/2020/TT-BTTTT)."""
