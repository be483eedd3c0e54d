# Settings of the DTU, kept in /usr/dtu_config.json as on the module.
import ql_fs
import modem

CONFIG_PATH = "/usr/dtu_config.json"


class Settings(object):
    def __init__(self, path=CONFIG_PATH):
        if not ql_fs.path_exists(path):
            raise ValueError("missing config file {}".format(path))
        self.path = path
        self.data = ql_fs.read_json(path)
        self.imei = modem.getDevImei()

    def get(self, key):
        value = self.data[key]
        if isinstance(value, str):
            return value.format(imei=self.imei)
        return value

    def save_boot(self):
        boots = self.data.get("boots", 0) + 1
        self.data["boots"] = boots
        ql_fs.touch(self.path, self.data)
        return boots
