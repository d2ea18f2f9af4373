/* JSON <-> Lua values, for events in and decisions out. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "lua_int.h"

void bh_lua_push_json(lua_State *L, const cJSON *v)
{
    luaL_checkstack(L, 3, "event too deep");
    if (cJSON_IsBool(v)) {
        lua_pushboolean(L, cJSON_IsTrue(v));
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(v)) {
        lua_pushstring(L, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        lua_createtable(L, cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0, 0);
        lua_Integer i = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            bh_lua_push_json(L, c);
            if (cJSON_IsArray(v))
                lua_rawseti(L, -2, i++);
            else
                lua_setfield(L, -2, c->string);
        }
    } else {
        lua_pushnil(L);
    }
}

/* A table is an array when its keys are exactly 1..#t (an empty table is an object). */
static int convert_is_array(lua_State *L, int idx)
{
    lua_Unsigned n = lua_rawlen(L, idx), count = 0;
    if (n == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            (lua_Unsigned)lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    return count == n;
}

static cJSON *convert_table(lua_State *L, int idx, int depth, const char **why)
{
    int array = convert_is_array(L, idx);
    cJSON *out = array ? cJSON_CreateArray() : cJSON_CreateObject();
    for (lua_Unsigned i = 1; array && i <= lua_rawlen(L, idx); i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        cJSON *v = bh_lua_to_json(L, -1, depth - 1, why);
        lua_pop(L, 1);
        if (!v)
            goto fail;
        cJSON_AddItemToArray(out, v);
    }
    if (!array)         /* an array's walk above pushed nothing; a stray nil here would be taken */
        lua_pushnil(L); /* for the parent's key and break its lua_next */
    while (!array && lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            *why = "has a key that is not a string";
            lua_pop(L, 2);
            goto fail;
        }
        cJSON *v = bh_lua_to_json(L, -1, depth - 1, why);
        if (!v) {
            lua_pop(L, 2);
            goto fail;
        }
        cJSON_AddItemToObject(out, lua_tostring(L, -2), v);
        lua_pop(L, 1);
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

cJSON *bh_lua_to_json(lua_State *L, int idx, int depth, const char **why)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull();
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (!isfinite(lua_tonumber(L, idx)))
            return (*why = "is not a finite number", NULL);
        return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING:
        return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE:
        if (depth <= 0)
            return (*why = "is nested too deep", NULL);
        return convert_table(L, idx, depth, why);
    case LUA_TFUNCTION:
        return (*why = "is a function", NULL);
    case LUA_TTHREAD:
        return (*why = "is a coroutine", NULL);
    default:
        return (*why = "is userdata", NULL);
    }
}
