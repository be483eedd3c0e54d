# The project's settings, in /usr/config.json on the module (next to main.py on a PC).
import ql_fs

CONFIG_FILE = "/usr/config.json"


def load():
    config = ql_fs.read_json(CONFIG_FILE)
    if not isinstance(config, dict):
        raise ValueError("cannot read " + CONFIG_FILE)
    return config
