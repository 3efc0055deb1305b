// libxcrypt (Debian's libcrypt-dev): crypt_r checks the bcrypt hashes of the web
// configuration's basic_auth_users, as Go's bcrypt does for the exporter toolkit.
#include <crypt.h>
