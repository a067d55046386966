"""The window's timing margins every peer of a run shares (SPEC sec. 1): the neurons' WindowClock
and the network simulator read them from here."""

TRAIN_MARGIN_S = 1.0  # inner steps stop this long before the window ends (compress + encode)
GATHER_MARGIN_S = 0.3  # after the upload window closes, so every valid upload is visible
