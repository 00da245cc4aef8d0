"""autosteer: networked ML applications as a stream pipeline on Kafka.

Importing this package has no side effects. The command line lives in
``autosteer.streams.cli``; settings in ``autosteer.settings``.
"""

__version__ = "0.1.0"
