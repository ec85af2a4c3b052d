"""The package's Python logging (worker, runtime: provider fallbacks, model notes) routed to the
node's ROS logger, at the node's level."""

from __future__ import annotations

import logging

from rclpy.logging import LoggingSeverity

PACKAGE_LOGGER = "stark_ros"


class _RosLogHandler(logging.Handler):
    """Routes the package's Python logging (worker, runtime) to the node's logger."""

    def __init__(self, ros_logger):
        super().__init__(logging.DEBUG)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        # One call line per severity: rclpy remembers the severity of each calling line and raises
        # ("Logger severity cannot be changed between calls") when one line logs at two.
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._ros_logger.info(message)
        else:
            self._ros_logger.debug(message)


def route_package_logging(ros_logger) -> None:
    package_log = logging.getLogger(PACKAGE_LOGGER)
    package_log.addHandler(_RosLogHandler(ros_logger))
    # The package's debug lines only when the node's logger asks for them (log_level:=debug).
    package_log.setLevel(logging.DEBUG if ros_logger.is_enabled_for(LoggingSeverity.DEBUG) else logging.INFO)
    package_log.propagate = False
