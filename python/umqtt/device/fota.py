"""QuecPython's ``fota`` (firmware update over the air): simulated and logged. Nothing is
downloaded or flashed; ``httpDownload`` reports success to its callback."""

from __future__ import annotations

from typing import Any, Callable

from ._support import NotSimulatedMembers, log


class fota(NotSimulatedMembers):
    def __init__(self, reset_disable: int = 1) -> None:
        self.reset_disable = reset_disable
        self._written = 0

    def httpDownload(
        self, url1: str, url2: str = "", callback: Callable[[Any], Any] | None = None
    ) -> int:
        log.info("fota.httpDownload(%r): simulated, nothing downloaded", url1)
        if callback is not None:
            callback((0, 100))
        return 0

    def apn_set(
        self, fota_apn: str = "", ip_type: int = 0, fota_user: str = "", fota_password: str = ""
    ) -> int:
        return 0

    def download_cancel(self) -> int:
        return 0

    def write(self, bytesData: bytes, file_size: int) -> int:
        self._written += len(bytesData)
        return 0

    def flush(self) -> int:
        return 0

    def verify(self) -> int:
        log.info("fota.verify(): %d bytes written (simulated)", self._written)
        return 0
